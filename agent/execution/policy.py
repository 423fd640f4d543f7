"""The signing policy: nothing is signed that the agent did not mean.

``SigningPolicy.check(request)`` runs inside ``TransactionSender`` immediately before the key
signs (every new transaction, every replacement, every cancel). It refuses, with
``SigningRefused``, unless all of these hold for the request's ``TxMandate``:

1. **The risk gate's last look** (transactions that serve an intent): the control files are
   re-read and ``RiskGate.check_intent`` approves, so a pause raised while a swap waited for
   its approval stops that swap.
2. **Target**: the per-chain allowlist. Our ArbExecutor, the configured DEX routers, the
   chain's 1inch router (``ChainAddresses.oneinch_router``); a token contract only for an
   ``approve`` of exactly the mandated amount to an allowlisted spender; ourselves for a cancel.
   No transaction carries ETH.
3. **Calldata** decodes to what the intent says: our router calls (V2
   ``swapExactTokensForTokens``, V3 ``exactInputSingle``/``exactInput`` in SwapRouter's ABI or
   SwapRouter02's, the latter inside ``multicall(deadline, [one swap])``), ArbExecutor
   ``execute``/``executeWithFlashLoan``/withdrawals, and 1inch v6 (``swap(executor, desc,
   data)`` and the ``unoswap`` family): source and destination token, amount in, receiver = our
   wallet, minimum return >= our floor. Unknown selectors are refused.
4. **Simulated balance changes**: one ``eth_call`` with a state override that places
   ``contracts/BalanceProbe.sol``'s runtime code at the wallet's address, so the wallet itself
   makes the call (``msg.sender`` and ``tx.origin`` as in the real transaction) and the probe
   reads every watched (token, holder) balance before and after it. Watched: the configured
   tokens, the intent's tokens and native ETH, for the wallet and the ArbExecutor. The intent's
   token out must rise by at least the floor, its token in fall by at most the amount, and
   nothing else may leave the wallet or the executor. State overrides (the third ``eth_call``
   parameter) are served by geth, Erigon, Nethermind, Reth, Anvil and the large RPC providers;
   a node that refuses them gets a refusal (fail closed), never an unchecked signature.

A refusal is logged, journaled as a rejection (``record_rejection``, reason ``signing_refused``
or the gate's reason, the detail naming the intent) and published on the event bus
(``SigningRefusal``; alerts make it a critical ``SigningRefusedAlert``, except the gate's own
refusals); the executor journals the intent ``failed`` with the same reason. It never reaches
the network.

Amounts are ``int`` in smallest units throughout.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, NoReturn, Protocol

from eth_abi import decode, encode
from eth_abi.exceptions import DecodingError
from eth_utils.address import to_checksum_address
from web3 import AsyncWeb3
from web3.types import RPCEndpoint

from agent.chain.abi import SEL_APPROVE, selector
from agent.chain.arb_executor import (
    EXECUTE_SELECTOR,
    EXECUTE_WITH_FLASH_LOAN_SELECTOR,
    HOP_ABI_TYPE,
    WITHDRAW_ETH_SELECTOR,
    WITHDRAW_TOKEN_SELECTOR,
    decode_arb_executor_error,
)
from agent.chain.tx import TxMandate, TxRequest, _revert_data_from_error, decode_revert
from agent.errors import (
    ConfigError,
    SigningRefused,
    SimulationRevert,
    TemporaryError,
    UnknownRouterCall,
)
from agent.events import EventBus, SigningRefusal
from agent.execution.common import (
    SEL_MULTICALL_DEADLINE,
    SEL_V2_SWAP_EXACT_TOKENS,
    SEL_V2_SWAP_FEE_ON_TRANSFER,
    SEL_V3_02_EXACT_INPUT,
    SEL_V3_02_EXACT_INPUT_SINGLE,
    SEL_V3_EXACT_INPUT,
    SEL_V3_EXACT_INPUT_SINGLE,
    DexContracts,
)
from agent.feeds.oneinch import (
    SWAP_FLAG_PARTIAL_FILL,
    SWAP_FLAG_REQUIRES_EXTRA_ETH,
    decode_router_call,
)
from agent.store.journal import Journal
from agent.types import Intent

log = logging.getLogger(__name__)

_ABIS = Path(__file__).resolve().parents[2] / "abis"
NATIVE = "0x" + "00" * 20  # the probe's name for the native balance
SIGNING_REFUSED = "signing_refused"  # the rejection reason journaled for a policy refusal


class GateDecision(Protocol):
    """``agent.risk.gate.Approved`` or ``Rejected`` (with ``reason`` and ``detail``)."""

    @property
    def approved(self) -> bool: ...


class IntentGate(Protocol):
    """The risk gate's last look before signing (``agent.risk.gate.RiskGate``; structural, so
    execution does not import the risk package)."""

    def refresh_controls(self) -> object: ...

    def check_intent(self, intent: Intent) -> GateDecision: ...


@cache
def _artifact_code(name: str, key: str) -> bytes:
    """``bytecode`` (creation) or ``deployedBytecode`` (runtime) of ``abis/<name>.json``."""
    try:
        document = json.loads((_ABIS / f"{name}.json").read_text(encoding="utf-8"))
        return bytes.fromhex(str(document[key]).removeprefix("0x"))
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(
            f"cannot load abis/{name}.json; run scripts/compile_contracts.py"
        ) from exc


_PROBE_ARGS = ["address", "bytes", "address[]", "address[]"]
_PROBE_SELECTOR = selector(f"probe({','.join(_PROBE_ARGS)})")


@dataclass(frozen=True, slots=True)
class BalanceChange:
    """One watched balance across the simulated call (smallest units; ``token`` NATIVE = ETH)."""

    token: str
    holder: str
    before: int
    after: int

    @property
    def delta(self) -> int:
        return self.after - self.before


class SigningPolicy:
    """Holds every transaction to its ``TxMandate`` before the key signs (module docstring).

    ``wallet`` is the signing account; ``watched_tokens`` the tokens whose balances must not
    fall unless the mandate says so; ``risk`` the gate for the last look; ``events``
    receives each refusal as an event (``SigningRefusal``; alerts subscribe).
    """

    def __init__(
        self,
        w3: AsyncWeb3[Any],
        wallet: str,
        contracts: DexContracts,
        *,
        oneinch_router: str | None = None,
        watched_tokens: Iterable[str] = (),
        journal: Journal | None = None,
        risk: IntentGate | None = None,
        events: EventBus | None = None,
    ) -> None:
        self.w3 = w3
        self.wallet: str = to_checksum_address(wallet)
        self.routers: set[str] = {to_checksum_address(r) for r in contracts.routers.values()}
        self.oneinch_router: str | None = (
            to_checksum_address(oneinch_router) if oneinch_router else None
        )
        self.arb_executor: str | None = (
            to_checksum_address(contracts.arb_executor) if contracts.arb_executor else None
        )
        self.watched_tokens = tuple(dict.fromkeys(to_checksum_address(t) for t in watched_tokens))
        self.journal = journal
        self.risk = risk
        self.events = events

    @property
    def spenders(self) -> set[str]:
        """Who may be granted an allowance: the routers and the chain's 1inch router."""
        return self.routers | ({self.oneinch_router} if self.oneinch_router else set())

    # -- the check --------------------------------------------------------------------------

    async def check(self, request: TxRequest) -> None:
        """Return when ``request`` may be signed; ``SigningRefused`` (journaled, alerted) or
        ``SimulationRevert`` (the call would revert) otherwise."""
        mandate = request.mandate
        if mandate is None:
            await self._refuse(request, "target", "no mandate: nothing says what it is for")
        if mandate.intent is not None and self.risk is not None:
            self.risk.refresh_controls()
            decision = self.risk.check_intent(mandate.intent)
            if not decision.approved:
                reason = str(getattr(decision, "reason", "risk"))
                detail = str(getattr(decision, "detail", ""))
                await self._refuse(request, "risk", f"{reason}: {detail}", journal_reason=reason)
        problem = self._static_problem(request, mandate)
        if problem is not None:
            rule, reason = problem
            await self._refuse(request, rule, reason)
        if mandate.action in ("approve", "swap", "aggregator_swap", "arb", "withdraw"):
            assert request.to is not None  # the static checks made sure
            try:
                changes = await self.simulate_balances(request.to, request.data, mandate)
            except SigningRefused as exc:  # the node cannot measure: journaled and alerted
                await self._refuse(request, exc.rule, exc.reason)
            problem_text = self.balance_problem(mandate, changes)
            if problem_text is not None:
                await self._refuse(request, "balance_change", problem_text)

    async def vet(self, request: TxRequest) -> None:
        """The target and calldata checks alone (no simulation): the executor runs them before
        granting a trade's approval, so a bad answer from 1inch gets no allowance either."""
        if request.mandate is None:
            await self._refuse(request, "target", "no mandate: nothing says what it is for")
        problem = self._static_problem(request, request.mandate)
        if problem is not None:
            await self._refuse(request, *problem)

    # -- target and calldata ----------------------------------------------------------------

    def _static_problem(self, request: TxRequest, mandate: TxMandate) -> tuple[str, str] | None:
        if request.value_wei != 0:
            return "target", f"{request.value_wei} wei attached; the agent never sends ETH"
        to = to_checksum_address(request.to) if request.to else None
        action = mandate.action
        if action == "cancel":
            if to != self.wallet or request.data:
                return "target", "a cancel is an empty transfer to ourselves"
            return None
        if action == "deploy":
            creation = _artifact_code("ArbExecutor", "bytecode")
            if to is not None or not request.data.startswith(creation):
                return "target", "only the ArbExecutor may be deployed"
            return None
        if to is None:
            return "target", f"a {action} cannot create a contract"
        try:
            if action == "approve":
                return self._approve_problem(to, request.data, mandate)
            if action == "swap":
                return self._router_problem(to, request.data, mandate)
            if action == "aggregator_swap":
                return self._oneinch_problem(to, request.data, mandate)
            if action in ("arb", "withdraw"):
                return self._executor_problem(to, request.data, mandate)
        except (DecodingError, ValueError, OverflowError) as exc:
            return "calldata", f"calldata does not decode: {exc}"
        return "target", f"unknown mandate {action!r}"

    def _approve_problem(self, to: str, data: bytes, mandate: TxMandate) -> tuple[str, str] | None:
        if mandate.token is None or to != to_checksum_address(mandate.token):
            return "target", f"approve sent to {to}, not to the token {mandate.token}"
        if data[:4] != SEL_APPROVE:
            return "calldata", f"selector 0x{data[:4].hex()} on a token is not approve"
        spender, amount = decode(["address", "uint256"], data[4:])
        spender = to_checksum_address(spender)
        if spender not in self.spenders:
            return "target", f"approve to {spender}, which is not an allowlisted spender"
        if mandate.spender is None or spender != to_checksum_address(mandate.spender):
            return "calldata", f"approve to {spender}, the mandate names {mandate.spender}"
        intent = mandate.intent
        allowed = {0, mandate.amount} if intent is None else {0, intent.amount_in}
        if amount != mandate.amount or amount not in allowed:
            return "calldata", f"approve of {amount}, not the exact amount {mandate.amount}"
        return None

    def _router_problem(self, to: str, data: bytes, mandate: TxMandate) -> tuple[str, str] | None:
        intent = mandate.intent
        if intent is None:
            return "calldata", "a swap without its intent"
        if to not in self.routers:
            return "target", f"{to} is not a configured router"
        if data[:4] == SEL_MULTICALL_DEADLINE:
            # SwapRouter02: multicall(deadline, [one swap]); anything bundled beside it refused
            _, calls = decode(["uint256", "bytes[]"], data[4:])
            if len(calls) != 1:
                return "calldata", f"a router multicall of {len(calls)} calls, not one swap"
            data = bytes(calls[0])
        selector, args = data[:4], data[4:]
        if selector in (SEL_V2_SWAP_EXACT_TOKENS, SEL_V2_SWAP_FEE_ON_TRANSFER):
            amount_in, minimum, path, recipient, _ = decode(
                ["uint256", "uint256", "address[]", "address", "uint256"], args
            )
            first, last = path[0], path[-1]
        elif selector == SEL_V3_EXACT_INPUT_SINGLE:
            ((first, last, _, recipient, _, amount_in, minimum, _),) = decode(
                ["(address,address,uint24,address,uint256,uint256,uint256,uint160)"], args
            )
        elif selector == SEL_V3_02_EXACT_INPUT_SINGLE:
            ((first, last, _, recipient, amount_in, minimum, _),) = decode(
                ["(address,address,uint24,address,uint256,uint256,uint160)"], args
            )
        elif selector == SEL_V3_EXACT_INPUT:
            ((path_bytes, recipient, _, amount_in, minimum),) = decode(
                ["(bytes,address,uint256,uint256,uint256)"], args
            )
            first, last = "0x" + path_bytes[:20].hex(), "0x" + path_bytes[-20:].hex()
        elif selector == SEL_V3_02_EXACT_INPUT:
            ((path_bytes, recipient, amount_in, minimum),) = decode(
                ["(bytes,address,uint256,uint256)"], args
            )
            first, last = "0x" + path_bytes[:20].hex(), "0x" + path_bytes[-20:].hex()
        else:
            return "calldata", f"unknown router function 0x{selector.hex()}"
        return self._swap_terms_problem(intent, mandate, first, last, amount_in, minimum, recipient)

    def _oneinch_problem(self, to: str, data: bytes, mandate: TxMandate) -> tuple[str, str] | None:
        intent = mandate.intent
        if intent is None:
            return "calldata", "a 1inch swap without its intent"
        if self.oneinch_router is None or to != self.oneinch_router:
            return "target", f"1inch named {to}, not the chain's 1inch router"
        try:
            call = decode_router_call(data)
        except UnknownRouterCall as exc:
            return "calldata", str(exc)
        if call.flags & (SWAP_FLAG_PARTIAL_FILL | SWAP_FLAG_REQUIRES_EXTRA_ETH):
            return "calldata", f"1inch swap flags {call.flags:#x} (partial fill or extra ETH)"
        return self._swap_terms_problem(
            intent,
            mandate,
            call.src_token,
            call.dst_token or intent.token_out,  # unoswap: the balance change proves it
            call.amount,
            call.min_return,
            call.receiver or self.wallet,
        )

    def _swap_terms_problem(
        self,
        intent: Intent,
        mandate: TxMandate,
        token_in: str,
        token_out: str,
        amount_in: int,
        minimum: int,
        recipient: str,
    ) -> tuple[str, str] | None:
        floor = max(mandate.min_out, intent.min_amount_out)
        if to_checksum_address(token_in) != to_checksum_address(intent.token_in):
            return "calldata", f"sells {token_in}, the intent sells {intent.token_in}"
        if to_checksum_address(token_out) != to_checksum_address(intent.token_out):
            return "calldata", f"buys {token_out}, the intent buys {intent.token_out}"
        if amount_in != intent.amount_in:
            return "calldata", f"spends {amount_in}, the intent spends {intent.amount_in}"
        if to_checksum_address(recipient) != self.wallet:
            return "calldata", f"pays {to_checksum_address(recipient)}, not our wallet"
        if minimum < floor:
            return "calldata", f"minimum return {minimum} is below our floor {floor}"
        return None

    def _executor_problem(self, to: str, data: bytes, mandate: TxMandate) -> tuple[str, str] | None:
        if self.arb_executor is None or to != self.arb_executor:
            return "target", f"{to} is not our ArbExecutor"
        selector, args = data[:4], data[4:]
        if mandate.action == "withdraw":
            if selector == WITHDRAW_TOKEN_SELECTOR:
                token, amount = decode(["address", "uint256"], args)
            elif selector == WITHDRAW_ETH_SELECTOR:
                token, (amount,) = NATIVE, decode(["uint256"], args)
            else:
                return "calldata", f"unknown ArbExecutor function 0x{selector.hex()}"
            if mandate.token is None or to_checksum_address(token) != to_checksum_address(
                mandate.token
            ):
                return "calldata", f"withdraws {token}, the mandate names {mandate.token}"
            if amount > mandate.amount:
                return "calldata", f"withdraws {amount}, more than {mandate.amount}"
            return None
        intent = mandate.intent
        if intent is None:
            return "calldata", "an arbitrage without its intent"
        if selector not in (EXECUTE_SELECTOR, EXECUTE_WITH_FLASH_LOAN_SELECTOR):
            return "calldata", f"unknown ArbExecutor function 0x{selector.hex()}"
        _, start, amount_in, min_profit, _ = decode(
            [f"{HOP_ABI_TYPE}[]", "address", "uint256", "uint256", "uint256"], args
        )
        if to_checksum_address(start) != to_checksum_address(intent.token_in):
            return "calldata", f"starts in {start}, the intent in {intent.token_in}"
        if amount_in != intent.amount_in:
            return "calldata", f"spends {amount_in}, the intent spends {intent.amount_in}"
        if min_profit < mandate.min_out:
            return "calldata", f"minimum profit {min_profit} is below our floor {mandate.min_out}"
        return None

    # -- simulated balance changes ----------------------------------------------------------

    def _holders(self) -> list[str]:
        return [self.wallet] + ([self.arb_executor] if self.arb_executor else [])

    def _tokens(self, mandate: TxMandate) -> list[str]:
        named: list[str] = [NATIVE, *self.watched_tokens]
        if mandate.intent is not None:
            named += [mandate.intent.token_in, mandate.intent.token_out]
        if mandate.token is not None:
            named.append(mandate.token)
        return list(dict.fromkeys(str(to_checksum_address(t)) for t in named))

    async def _probe(self, params: Mapping[str, Any], artifact: str) -> Mapping[str, Any]:
        """``eth_call`` of ``params`` with the wallet's code overridden by ``artifact``."""
        probe_code = _artifact_code(artifact, "deployedBytecode")
        override = {self.wallet: {"code": "0x" + probe_code.hex()}}
        response: Mapping[str, Any] = await self.w3.provider.make_request(
            RPCEndpoint("eth_call"), [params, "latest", override]
        )
        return response

    async def simulate_balances(
        self, target: str, calldata: bytes, mandate: TxMandate
    ) -> list[BalanceChange]:
        """The watched balances around ``target.call(calldata)`` made by the wallet, simulated
        on the latest block (see the module docstring for the method)."""
        tokens, holders = self._tokens(mandate), self._holders()
        call = _PROBE_SELECTOR + encode(_PROBE_ARGS, [target, calldata, tokens, holders])
        params = {"from": self.wallet, "to": self.wallet, "data": "0x" + call.hex()}
        response = await self._probe(params, "BalanceProbe")
        error = response.get("error")
        if error is not None and "NotActivated" in str(error):
            # A node before Shanghai (a legacy-gas chain) has no PUSH0: the London build.
            response = await self._probe(params, "london/BalanceProbe")
            error = response.get("error")
        if error is not None:
            message = str(error.get("message", error)) if isinstance(error, Mapping) else str(error)
            revert_data = _revert_data_from_error(error) if isinstance(error, Mapping) else None
            if revert_data is not None or "revert" in message.lower():
                reason = decode_revert(revert_data or b"", (decode_arb_executor_error,))
                raise SimulationRevert(reason if revert_data is not None else message)
            code = error.get("code") if isinstance(error, Mapping) else None
            if code == -32602 or "override" in message.lower():
                # fail closed: without the measurement nothing is signed, and the operator
                # must hear that this node cannot give it
                raise SigningRefused(
                    "simulation", f"the node cannot simulate with a state override: {message}"
                )
            raise TemporaryError(f"balance simulation failed: {message}")
        raw = bytes.fromhex(str(response["result"]).removeprefix("0x"))
        before, after = decode(["uint256[]", "uint256[]"], raw)
        changes = []
        for i, token in enumerate(tokens):
            for j, holder in enumerate(holders):
                k = i * len(holders) + j
                changes.append(BalanceChange(token, holder, int(before[k]), int(after[k])))
        return changes

    def balance_problem(self, mandate: TxMandate, changes: Sequence[BalanceChange]) -> str | None:
        """What in ``changes`` the mandate does not allow, or ``None``."""
        intent = mandate.intent
        allowed_loss: dict[tuple[str, str], int] = {}
        required_gain: dict[tuple[str, str], int] = {}
        if mandate.action in ("swap", "aggregator_swap") and intent is not None:
            token_in = to_checksum_address(intent.token_in)
            token_out = to_checksum_address(intent.token_out)
            allowed_loss[(token_in, self.wallet)] = intent.amount_in
            required_gain[(token_out, self.wallet)] = max(mandate.min_out, intent.min_amount_out)
        elif mandate.action == "arb" and intent is not None and self.arb_executor is not None:
            required_gain[(to_checksum_address(intent.token_in), self.arb_executor)] = (
                mandate.min_out
            )
        elif mandate.action == "withdraw" and self.arb_executor and mandate.token is not None:
            allowed_loss[(to_checksum_address(mandate.token), self.arb_executor)] = mandate.amount
        for change in changes:
            key = (change.token, change.holder)
            who = "wallet" if change.holder == self.wallet else "ArbExecutor"
            what = "ETH" if change.token == NATIVE else change.token
            if key in required_gain and change.delta < required_gain[key]:
                return (
                    f"the {who} would receive {change.delta} of {what}, "
                    f"less than the minimum {required_gain[key]}"
                )
            if change.delta < -allowed_loss.get(key, 0):
                return f"{-change.delta} of {what} would leave the {who}"
        missing = set(required_gain) - {(c.token, c.holder) for c in changes}
        if missing:
            return f"balances not measured: {sorted(missing)}"
        return None

    # -- refusing ---------------------------------------------------------------------------

    async def _refuse(
        self, request: TxRequest, rule: str, reason: str, *, journal_reason: str = SIGNING_REFUSED
    ) -> NoReturn:
        mandate = request.mandate
        intent = mandate.intent if mandate is not None else None
        log.error(
            "refused to sign %s to %s (%s): %s",
            request.purpose,
            request.to,
            rule,
            reason,
            extra={"intent_id": intent.id if intent else None},
        )
        if self.journal is not None and intent is not None:
            # Not linked by intent_id: that would move the intent to "rejected", which an
            # intent whose approval already went out cannot become. The executor ends it
            # "failed" with the same reason.
            await self.journal.record_rejection(
                strategy=intent.strategy,
                reason=journal_reason,
                detail=f"intent {intent.id}, {request.purpose}: {reason}",
            )
        if self.events is not None:
            self.events.publish(
                SigningRefusal(
                    purpose=request.purpose,
                    rule=rule,
                    reason=reason,
                    trade_id=intent.id if intent else None,
                    strategy=intent.strategy if intent else None,
                    target=request.to,
                )
            )
        raise SigningRefused(rule, reason)
