"""Intent -> transaction -> fill: one code path for live and fork, a paper executor beside it.

Chain execution of one intent (``ChainExecutor.execute``):

1. journal the intent (``pending``) before any I/O;
2. directional swap: exact approval of ``amount_in`` to the router (reset to 0 first for tokens
   that require it), mined before the swap is simulated; arbitrage: nothing to approve, the
   ArbExecutor spends its own balance;
3. calldata with ``amountOutMinimum`` = the local prediction minus the slippage limit (floored)
   and a deadline; for arbitrage ``minProfit`` = the predicted profit minus the slippage limit;
4. ``TransactionSender.send``: simulate, sign, journal, broadcast; ``track``: receipt,
   replacement when stuck;
5. settle: realised amounts from the receipt's ``Transfer`` logs, cross-checked against the
   balance delta between the block before and the block of the receipt, stored beside the
   predicted amounts.

Aggregator (1inch) routes: a swap intent whose single hop has ``kind == "aggregator"`` (DCA's
1inch route) is executed through the 1inch client's ``build_swap`` when the executor was given
one (a real 1inch client, live or fork): the returned transaction must come from our wallet and
carry no ETH; 1inch's router enforces a minimum output derived from the same ``slippage_bps``,
so the swap is refused unless that minimum (1inch's ``dstAmount`` less the slippage) is at
least our own floor; then the exact approval of ``amount_in`` goes to the router 1inch named,
and the transaction is simulated before it is signed, like every other. Without a 1inch client
(simulated feeds) and in paper mode (no ``eth_call`` can verify a 1inch route) the intent fails
at once with a clear reason; the wiring also tells the strategies so
(``MarketSnapshot.aggregator_executable``), so DCA does not propose such routes there.

``Reconciler`` runs at start-up (and may run any time): every non-final journal row is checked
against the chain, so a crash at any point neither loses nor repeats a trade.

Amounts are ``int`` in smallest units throughout; ``slippage_bps`` is in basis points.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from eth_abi import decode, encode
from eth_utils.crypto import keccak
from web3 import AsyncWeb3
from web3.types import RPCEndpoint

from agent.chain.arb_executor import (
    decode_arb_executor_error,
    encode_execute,
    encode_execute_with_flash_loan,
    hops_from_route,
)
from agent.chain.tx import (
    BroadcastRejected,
    FeePolicy,
    Receipt,
    TransactionSender,
    TxRequest,
    net_token_flow,
    token_transfers,
)
from agent.errors import AgentError, FatalError, SimulationRevert, TemporaryError
from agent.feeds.oneinch import OneInchSwap
from agent.store.journal import InsufficientPaperBalance, Journal, TxRecord
from agent.store.models import IntentStatus, TxStatus
from agent.types import Fill, Intent, RouteHop

log = logging.getLogger(__name__)

BPS = 10_000
TRADE_PURPOSES = frozenset({"swap", "arb"})

# Steps reported to the step hook (besides the sender's tx_* steps).
STEP_INTENT_RECORDED = "intent_recorded"
STEP_APPROVED = "approved"
STEP_SETTLED = "settled"

StepHook = Callable[[str], Awaitable[None]]


def _selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


SEL_APPROVE = _selector("approve(address,uint256)")
SEL_ALLOWANCE = _selector("allowance(address,address)")
SEL_BALANCE_OF = _selector("balanceOf(address)")
SEL_V2_SWAP_EXACT_TOKENS = _selector(
    "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)"
)
SEL_V2_GET_AMOUNTS_OUT = _selector("getAmountsOut(uint256,address[])")
SEL_V3_EXACT_INPUT_SINGLE = _selector(
    "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))"
)
SEL_V3_EXACT_INPUT = _selector("exactInput((bytes,address,uint256,uint256,uint256))")
SEL_QUOTE_EXACT_INPUT_SINGLE = _selector(
    "quoteExactInputSingle((address,address,uint256,uint24,uint160))"
)


AGGREGATOR_KIND = "aggregator"
NO_AGGREGATOR = "no 1inch client configured: an aggregator route cannot be executed here"


class SwapBuilder(Protocol):
    """What executing an aggregator route needs: 1inch's ``/swap`` (``OneInchClient``)."""

    async def build_swap(
        self,
        src: str,
        dst: str,
        amount_in: int,
        from_address: str,
        slippage_pct: Decimal | float,
        *,
        receiver: str | None = None,
        disable_estimate: bool = False,
    ) -> OneInchSwap: ...


def is_aggregator_route(route: Sequence[RouteHop]) -> bool:
    """True when the route goes through an aggregator (1inch) instead of named pools."""
    return any(hop.kind == AGGREGATOR_KIND for hop in route)


def min_amount_out(predicted_amount_out: int, slippage_bps: int) -> int:
    """``predicted_amount_out`` minus ``slippage_bps`` basis points, rounded down."""
    return predicted_amount_out * (BPS - slippage_bps) // BPS


def min_profit(predicted_profit: int, slippage_bps: int) -> int:
    """The arbitrage profit floor: the prediction minus ``slippage_bps``, never below 0 (the
    ArbExecutor then still refuses to lose money)."""
    return max(0, predicted_profit * (BPS - slippage_bps) // BPS)


# ---------------------------------------------------------------------------------------------
# Addresses and settings


@dataclass(frozen=True, slots=True)
class DexContracts:
    """Where the routers, factories and quoter of each DEX are, and our ArbExecutor.

    ``routers`` / ``factories`` map a ``RouteHop.dex`` name ("uniswap_v2", "sushiswap",
    "uniswap_v3") to the V2 Router02 / V3 SwapRouter and to the factory.
    """

    routers: Mapping[str, str]
    factories: Mapping[str, str]
    quoter_v2: str | None = None
    arb_executor: str | None = None

    @classmethod
    def from_addresses(
        cls, addresses: Mapping[str, str], arb_executor: str | None = None
    ) -> DexContracts:
        """From a deployment/registry address map ("uniswap_v2.router", ... as the devnet)."""
        routers: dict[str, str] = {}
        factories: dict[str, str] = {}
        for key, address in addresses.items():
            dex, _, role = key.partition(".")
            if role in ("router", "swap_router"):
                routers[dex] = address
            elif role == "factory":
                factories[dex] = address
        return cls(routers, factories, addresses.get("uniswap_v3.quoter_v2"), arb_executor)


@dataclass(frozen=True, slots=True)
class ExecutionSettings:
    """How intents are carried out. ``mode`` is "live" or "fork" (the same code path)."""

    mode: str = "fork"
    slippage_bps: int = 50
    deadline_s: int = 120
    receipt_timeout_s: float = 180.0
    replace_after_s: float | None = 60.0
    max_replacements: int = 3
    # Tokens (like USDT) whose approve() reverts unless the allowance is 0 first.
    reset_allowance_tokens: frozenset[str] = frozenset()


def settings_from_config(execution: Any) -> tuple[ExecutionSettings, FeePolicy]:
    """``ExecutionSettings`` and ``FeePolicy`` from ``agent.config.ExecutionConfig``."""
    mode = "fork" if execution.mode == "demo" else str(execution.mode)
    settings = ExecutionSettings(
        mode=mode,
        slippage_bps=int(execution.slippage_bps),
        deadline_s=int(execution.deadline_s),
        receipt_timeout_s=float(execution.receipt_timeout_s),
        replace_after_s=float(execution.replace_after_s),
    )
    policy = FeePolicy(
        max_fee_per_gas_cap_wei=int(execution.max_fee_wei),
        priority_fee_cap_wei=int(execution.max_priority_fee_wei),
        gas_limit_margin_bps=int(execution.gas_limit_margin_pct) * 100,
        replacement_bump_bps=int(execution.fee_bump_pct * 100),
    )
    return settings, policy


@dataclass(frozen=True, slots=True)
class ExecutionOutcome:
    """What became of an intent: its journal status, the fill when filled, and why if not."""

    intent_id: str
    status: IntentStatus
    fill: Fill | None = None
    detail: str | None = None


# ---------------------------------------------------------------------------------------------
# Calldata


def _erc20_call(selector: bytes, types: Sequence[str], args: Sequence[Any]) -> bytes:
    return selector + encode(list(types), list(args))


def encode_v3_path(route: Sequence[RouteHop]) -> bytes:
    """The packed V3 path: token (20 bytes), fee (3 bytes), token, fee, ..., token."""
    path = bytes.fromhex(route[0].token_in[2:])
    for hop in route:
        path += hop.fee_pips.to_bytes(3, "big") + bytes.fromhex(hop.token_out[2:])
    return path


def _single_dex(route: Sequence[RouteHop]) -> tuple[str, str]:
    dexes = {hop.dex for hop in route}
    kinds = {hop.kind for hop in route}
    if len(dexes) != 1 or len(kinds) != 1:
        raise FatalError("a router swap must stay on one DEX; use an arbitrage route instead")
    for a, b in itertools.pairwise(route):
        if a.token_out.lower() != b.token_in.lower():
            raise FatalError("route hops do not connect")
    return route[0].dex, route[0].kind


def encode_router_swap(
    intent: Intent, recipient: str, amount_out_minimum: int, deadline: int
) -> bytes:
    """Router calldata for a directional swap: V2 ``swapExactTokensForTokens``, V3
    ``exactInputSingle`` (one hop) or ``exactInput`` (several hops)."""
    _, kind = _single_dex(intent.route)
    if kind == "v2":
        path = [intent.route[0].token_in, *(hop.token_out for hop in intent.route)]
        return SEL_V2_SWAP_EXACT_TOKENS + encode(
            ["uint256", "uint256", "address[]", "address", "uint256"],
            [intent.amount_in, amount_out_minimum, path, recipient, deadline],
        )
    if len(intent.route) == 1:
        hop = intent.route[0]
        return SEL_V3_EXACT_INPUT_SINGLE + encode(
            ["(address,address,uint24,address,uint256,uint256,uint256,uint160)"],
            [
                (
                    hop.token_in,
                    hop.token_out,
                    hop.fee_pips,
                    recipient,
                    deadline,
                    intent.amount_in,
                    amount_out_minimum,
                    0,
                )
            ],
        )
    return SEL_V3_EXACT_INPUT + encode(
        ["(bytes,address,uint256,uint256,uint256)"],
        [(encode_v3_path(intent.route), recipient, deadline, intent.amount_in, amount_out_minimum)],
    )


# ---------------------------------------------------------------------------------------------
# Reading helpers


async def _eth_call(
    w3: AsyncWeb3[Any], to: str, data: bytes, block: int | str = "latest", sender: str | None = None
) -> bytes:
    params: dict[str, Any] = {"to": to, "data": "0x" + data.hex()}
    if sender is not None:
        params["from"] = sender
    block_id = hex(block) if isinstance(block, int) else block
    response = await w3.provider.make_request(RPCEndpoint("eth_call"), [params, block_id])
    error = response.get("error")
    if error is not None:
        raise SimulationRevert(
            str(error.get("message", error)) if isinstance(error, dict) else str(error)
        )
    return bytes.fromhex(str(response["result"]).removeprefix("0x"))


async def erc20_balance(
    w3: AsyncWeb3[Any], token: str, holder: str, block: int | str = "latest"
) -> int:
    """``token.balanceOf(holder)`` at ``block``, smallest units."""
    out = await _eth_call(w3, token, _erc20_call(SEL_BALANCE_OF, ["address"], [holder]), block)
    return int.from_bytes(out[:32], "big")


async def erc20_allowance(w3: AsyncWeb3[Any], token: str, owner: str, spender: str) -> int:
    """``token.allowance(owner, spender)``, smallest units."""
    data = _erc20_call(SEL_ALLOWANCE, ["address", "address"], [owner, spender])
    return int.from_bytes((await _eth_call(w3, token, data))[:32], "big")


# ---------------------------------------------------------------------------------------------
# Settlement (shared by the live path and reconciliation)


def _trade_account(intent: Intent, trade_tx: TxRecord) -> str:
    """Whose balances the trade moves: the ArbExecutor for an arbitrage, the wallet for a swap."""
    if intent.kind == "arb":
        if trade_tx.to_address is None:
            raise FatalError(f"arbitrage transaction {trade_tx.tx_hash} has no target")
        return trade_tx.to_address
    return trade_tx.sender


def fill_from_receipt(
    intent: Intent, mode: str, trade_tx: TxRecord, receipt: Receipt, gas_receipts: Sequence[Receipt]
) -> Fill:
    """Realised amounts of ``intent`` from the ``Transfer`` logs of its trade ``receipt``.

    Arbitrage: what left the ArbExecutor in the start token is ``amount_in``, what came back is
    ``amount_out``, the difference the profit. Swap: what left the wallet in ``token_in`` and
    what reached it in ``token_out``. Gas sums every mined transaction of the intent (approvals
    included), in wei.
    """
    account = _trade_account(intent, trade_tx)
    if intent.kind == "arb":
        outflow = sum(
            amount
            for sender, _, amount in token_transfers(receipt, intent.token_in)
            if sender == account
        )
        inflow = sum(
            amount
            for _, recipient, amount in token_transfers(receipt, intent.token_in)
            if recipient == account
        )
        amount_in, amount_out = outflow, inflow
        profit = inflow - outflow
    else:
        amount_in = -net_token_flow(receipt, intent.token_in, account)
        amount_out = net_token_flow(receipt, intent.token_out, account)
        profit = 0
    return Fill(
        intent_id=intent.id,
        mode=mode,
        tx_hash=receipt.tx_hash,
        token_in=intent.token_in,
        token_out=intent.token_out,
        amount_in=amount_in,
        amount_out=amount_out,
        profit=profit,
        predicted_amount_in=intent.amount_in,
        predicted_amount_out=intent.predicted_amount_out,
        predicted_profit=intent.predicted_profit,
        gas_used=sum(r.gas_used for r in gas_receipts),
        gas_cost_wei=sum(r.gas_cost_wei for r in gas_receipts),
        block_number=receipt.block_number,
        predicted_profit_usd=intent.predicted_profit_usd,
    )


# ---------------------------------------------------------------------------------------------
# Live and fork


class ChainExecutor:
    """Carries intents out on a real chain (live) or an Anvil fork: the same code path."""

    def __init__(
        self,
        sender: TransactionSender,
        journal: Journal,
        contracts: DexContracts,
        settings: ExecutionSettings,
        on_step: StepHook | None = None,
        clock: Callable[[], float] = time.time,
        aggregator: SwapBuilder | None = None,
    ) -> None:
        if settings.mode not in ("live", "fork"):
            raise FatalError(f"ChainExecutor runs live or fork, not {settings.mode!r}")
        self.sender = sender
        self.journal = journal
        self.contracts = contracts
        self.settings = settings
        self._on_step = on_step
        self._clock = clock
        self.aggregator = aggregator
        self._allowance_locks: dict[tuple[str, str], asyncio.Lock] = {}
        if decode_arb_executor_error not in sender.revert_decoders:
            sender.revert_decoders = (*sender.revert_decoders, decode_arb_executor_error)

    async def _step(self, name: str) -> None:
        if self._on_step is not None:
            await self._on_step(name)

    @property
    def w3(self) -> AsyncWeb3[Any]:
        return self.sender.read_w3

    async def execute(self, intent: Intent) -> ExecutionOutcome:
        """Journal, approve (swaps), simulate, sign, send, track and settle ``intent``.

        A simulation revert ends the intent as ``failed`` with the decoded reason; a mined
        revert as ``reverted``; a receipt that does not come in time leaves it ``submitted`` for
        the next reconciliation.
        """
        await self.journal.record_intent(intent, self.settings.mode)
        await self._step(STEP_INTENT_RECORDED)
        try:
            if intent.deadline <= int(self._clock()):
                raise SimulationRevert(f"intent deadline {intent.deadline} has passed")
            # An exact allowance belongs to one swap until that swap is mined: concurrent swaps
            # spending the same token through the same router take turns.
            async with self._spending_lock(intent):
                request = await self._trade_request(intent)
                sent = await self.sender.send(request, intent_id=intent.id)
                receipt, winner = await self.sender.track(
                    sent,
                    timeout_s=self.settings.receipt_timeout_s,
                    stuck_after_s=self.settings.replace_after_s,
                    max_replacements=self.settings.max_replacements,
                )
        except (SimulationRevert, BroadcastRejected) as exc:
            return await self._fail(intent, exc.reason)
        except FatalError as exc:
            log.error("intent %s cannot be executed: %s", intent.id, exc)
            return await self._fail(intent, str(exc))
        except TemporaryError as exc:
            in_flight = [
                tx
                for tx in await self.journal.txs_for_intent(intent.id)
                if tx.status in (TxStatus.SIGNED, TxStatus.SENT)
            ]
            if not in_flight:  # nothing of this trade is on its way to the chain
                return await self._fail(intent, str(exc))
            log.warning("intent %s still pending: %s", intent.id, exc)
            return ExecutionOutcome(intent.id, IntentStatus.SUBMITTED, detail=str(exc))
        trade_tx = await self.journal.get_tx(winner.tx_hash)
        outcome = await self._settle(intent, trade_tx, receipt, cross_check=True)
        await self._step(STEP_SETTLED)
        return outcome

    def _spending_lock(self, intent: Intent) -> asyncio.Lock:
        if intent.kind != "swap" or not intent.route:
            return asyncio.Lock()  # arbitrage spends the contract's own balance: no allowance
        spender = self.contracts.routers.get(intent.route[0].dex, "")
        key = (intent.token_in.lower(), spender.lower())
        return self._allowance_locks.setdefault(key, asyncio.Lock())

    async def _fail(self, intent: Intent, reason: str) -> ExecutionOutcome:
        await self.journal.set_intent_status(intent.id, IntentStatus.FAILED, reason)
        log.info("intent %s failed before its trade reached the chain: %s", intent.id, reason)
        return ExecutionOutcome(intent.id, IntentStatus.FAILED, detail=reason)

    # -- building -------------------------------------------------------------------------

    def _deadline(self, intent: Intent) -> int:
        return min(intent.deadline, int(self._clock()) + self.settings.deadline_s)

    async def _trade_request(self, intent: Intent) -> TxRequest:
        if intent.kind == "arb":
            return await self._arb_request(intent)
        if intent.kind == "swap" and is_aggregator_route(intent.route):
            return await self._aggregator_request(intent)
        if intent.kind == "swap":
            return await self._swap_request(intent)
        raise FatalError(f"unknown intent kind {intent.kind!r}")

    async def _swap_request(self, intent: Intent) -> TxRequest:
        dex, _ = _single_dex(intent.route)
        router = self.contracts.routers.get(dex)
        if router is None:
            raise FatalError(f"no router known for {dex}")
        await self.ensure_exact_allowance(intent.id, intent.token_in, router, intent.amount_in)
        amount_out_minimum = max(
            intent.min_amount_out,
            min_amount_out(intent.predicted_amount_out, self.settings.slippage_bps),
        )
        calldata = encode_router_swap(
            intent, self.sender.address, amount_out_minimum, self._deadline(intent)
        )
        return TxRequest(to=router, data=calldata, purpose="swap")

    async def _aggregator_request(self, intent: Intent) -> TxRequest:
        """The 1inch swap transaction for ``intent`` (see the module docstring)."""
        if self.aggregator is None:
            raise FatalError(NO_AGGREGATOR)
        if len(intent.route) != 1:
            raise FatalError("an aggregator route is a single hop")
        slippage_bps = self.settings.slippage_bps
        floor = max(
            intent.min_amount_out, min_amount_out(intent.predicted_amount_out, slippage_bps)
        )
        swap = await self.aggregator.build_swap(
            intent.token_in,
            intent.token_out,
            intent.amount_in,
            self.sender.address,
            Decimal(slippage_bps) / 100,
            # the exact allowance is only granted below: 1inch could not estimate gas yet
            disable_estimate=True,
        )
        tx = swap.tx
        if tx.from_address.lower() != self.sender.address.lower() or tx.value_wei != 0:
            raise FatalError(
                f"1inch built a swap from {tx.from_address} with {tx.value_wei} wei attached; "
                f"expected one from {self.sender.address} with none"
            )
        enforced = min_amount_out(swap.quote.amount_out, slippage_bps)
        if enforced < floor:
            raise SimulationRevert(
                f"1inch now offers {swap.quote.amount_out} (minimum {enforced}), "
                f"below our minimum {floor}"
            )
        try:  # a malformed answer fails this intent, never the engine
            router = AsyncWeb3.to_checksum_address(tx.to)
            data = bytes.fromhex(tx.data.removeprefix("0x"))
        except ValueError as exc:
            raise FatalError(f"1inch returned an unusable swap transaction: {exc}") from exc
        await self.ensure_exact_allowance(intent.id, intent.token_in, router, intent.amount_in)
        return TxRequest(to=router, data=data, purpose="swap")

    async def _arb_request(self, intent: Intent) -> TxRequest:
        executor = self.contracts.arb_executor
        if executor is None:
            raise FatalError("no ArbExecutor configured (execution.arb_executor)")
        if intent.token_in.lower() != intent.token_out.lower():
            raise FatalError("an arbitrage starts and ends in the same token")
        hops = hops_from_route(intent.route, self.contracts.factories)
        floor = max(
            intent.min_amount_out - intent.amount_in,
            min_profit(intent.predicted_profit, self.settings.slippage_bps),
        )
        deadline = self._deadline(intent)
        held = await erc20_balance(self.w3, intent.token_in, executor)
        if held >= intent.amount_in:
            calldata = encode_execute(hops, intent.token_in, intent.amount_in, floor, deadline)
        elif intent.route[0].kind == "v2":
            # Not enough capital on the contract: borrow the first hop from the pair itself.
            calldata = encode_execute_with_flash_loan(
                hops, intent.token_in, intent.amount_in, floor, deadline
            )
        else:
            raise SimulationRevert(
                f"ArbExecutor holds {held} of {intent.token_in}, needs {intent.amount_in}"
            )
        return TxRequest(to=executor, data=calldata, purpose="arb")

    async def ensure_exact_allowance(
        self, intent_id: str | None, token: str, spender: str, amount: int
    ) -> None:
        """Make ``token.allowance(wallet, spender) == amount`` exactly (never unlimited): reset
        to 0 first for tokens that require it; each approval is mined before returning."""
        current = await erc20_allowance(self.w3, token, self.sender.address, spender)
        if current == amount:
            return
        if current != 0 and token in self.settings.reset_allowance_tokens:
            await self._approve(intent_id, token, spender, 0)
        await self._approve(intent_id, token, spender, amount)
        await self._step(STEP_APPROVED)

    async def _approve(self, intent_id: str | None, token: str, spender: str, amount: int) -> None:
        data = _erc20_call(SEL_APPROVE, ["address", "uint256"], [spender, amount])
        sent = await self.sender.send(
            TxRequest(to=token, data=data, purpose="approve"), intent_id=intent_id
        )
        receipt, _ = await self.sender.track(
            sent,
            timeout_s=self.settings.receipt_timeout_s,
            stuck_after_s=self.settings.replace_after_s,
            max_replacements=self.settings.max_replacements,
        )
        if receipt.status != 1:
            raise SimulationRevert(f"approve of {token} reverted in {receipt.tx_hash}")

    # -- settling -------------------------------------------------------------------------

    async def _settle(
        self, intent: Intent, trade_tx: TxRecord, receipt: Receipt, cross_check: bool
    ) -> ExecutionOutcome:
        if receipt.status != 1:
            reason = await self.sender.replay_revert_reason(receipt.tx_hash)
            await self.journal.set_intent_status(intent.id, IntentStatus.REVERTED, reason)
            log.warning("intent %s reverted on chain in %s: %s", intent.id, receipt.tx_hash, reason)
            return ExecutionOutcome(intent.id, IntentStatus.REVERTED, detail=reason)
        gas_receipts = await _mined_receipts(
            self.sender, await self.journal.txs_for_intent(intent.id)
        )
        fill = fill_from_receipt(intent, self.settings.mode, trade_tx, receipt, gas_receipts)
        if cross_check:
            await self._cross_check_balances(intent, trade_tx, receipt, fill)
        await self.journal.record_fill(fill)
        log.info(
            "intent %s filled: out %d (predicted %d), profit %d (predicted %d)",
            intent.id,
            fill.amount_out,
            fill.predicted_amount_out,
            fill.profit,
            fill.predicted_profit,
        )
        return ExecutionOutcome(intent.id, IntentStatus.FILLED, fill=fill)

    async def _cross_check_balances(
        self, intent: Intent, trade_tx: TxRecord, receipt: Receipt, fill: Fill
    ) -> None:
        """Compare the log-derived amounts with balance deltas across the receipt's block.

        Only exact when nothing else in that block moved the same balances; a mismatch is
        logged, the logs (which describe this transaction alone) stay authoritative.
        """
        account = _trade_account(intent, trade_tx)
        block = receipt.block_number
        try:
            if intent.kind == "arb":
                expected = {intent.token_in: fill.profit}
            else:
                expected = {intent.token_in: -fill.amount_in, intent.token_out: fill.amount_out}
            for token, want in expected.items():
                before = await erc20_balance(self.w3, token, account, block - 1)
                after = await erc20_balance(self.w3, token, account, block)
                if after - before != want:
                    log.warning(
                        "intent %s: %s balance delta %d differs from the logs' %d (other "
                        "transactions in block %d?)",
                        intent.id,
                        token,
                        after - before,
                        want,
                        block,
                    )
        except AgentError as exc:  # historical state may be pruned on a non-archive node
            log.info("balance cross-check for %s skipped: %s", intent.id, exc)


async def _mined_receipts(sender: TransactionSender, txs: Sequence[TxRecord]) -> list[Receipt]:
    receipts = []
    for tx in txs:
        if tx.status in (TxStatus.MINED, TxStatus.REVERTED):
            receipt = await sender.get_receipt(tx.tx_hash)
            if receipt is not None:
                receipts.append(receipt)
    return receipts


# ---------------------------------------------------------------------------------------------
# Start-up reconciliation


@dataclass
class ReconcileReport:
    """Counts from one reconciliation pass."""

    mined: int = 0
    reverted: int = 0
    replaced: int = 0
    dropped: int = 0
    rebroadcast: int = 0
    still_pending: int = 0
    intents_filled: int = 0
    intents_reverted: int = 0
    intents_cancelled: int = 0
    notes: list[str] = field(default_factory=list)


class Reconciler:
    """Brings every non-final journal row in line with the chain.

    Needs no key: a journaled transaction is already signed, so rebroadcasting it is sending
    its raw bytes again. Per (sender, nonce) group of journaled transactions:

    * one of them has a receipt -> it is mined/reverted, the others are replaced;
    * none has, but the account's mined nonce has passed it -> dropped (its nonce went to a
      transaction we did not journal);
    * still pending in the node's pool -> keep tracking; unknown to the node -> rebroadcast the
      newest one (the highest fees) and track it.

    Then every non-final intent: no transaction -> cancelled (interrupted before signing);
    trade mined -> fill from its receipt; trade reverted -> reverted; otherwise cancelled.
    An intent is never executed a second time.
    """

    def __init__(
        self, sender: TransactionSender, journal: Journal, receipt_grace_s: float = 5.0
    ) -> None:
        self.sender = sender
        self.journal = journal
        self.receipt_grace_s = receipt_grace_s

    async def reconcile(self, wait_s: float = 60.0) -> ReconcileReport:
        """One full pass; waits up to ``wait_s`` seconds for transactions still in the pool."""
        report = ReconcileReport()
        groups: dict[tuple[int, str, int], list[TxRecord]] = {}
        for tx in await self.journal.list_non_final():
            groups.setdefault((tx.chain_id, tx.sender, tx.nonce), []).append(tx)
        pending: list[list[str]] = []
        for (chain_id, sender, nonce), _ in sorted(groups.items(), key=lambda kv: kv[0]):
            siblings = await self.journal.txs_with_nonce(chain_id, sender, nonce)
            waiting = await self._reconcile_nonce(sender, nonce, siblings, report)
            if waiting:
                pending.append(waiting)
        for hashes in pending:
            receipt = await self.sender.wait_for_receipt(hashes, wait_s)
            if receipt is None:
                report.still_pending += 1
                report.notes.append(f"no receipt yet for {hashes[-1]}")
                continue
            await self._record(receipt, hashes, report)
        await self._reconcile_intents(report)
        # Whatever happened, the next local nonce must follow the chain.
        await self.sender.nonces.resync()
        return report

    async def _record(
        self, receipt: Receipt, hashes: Sequence[str], report: ReconcileReport
    ) -> None:
        non_final = []
        for tx_hash in hashes:
            row = await self.journal.get_tx(tx_hash)
            if row.status in (TxStatus.SIGNED, TxStatus.SENT):
                non_final.append(tx_hash)
        await self.sender.record_outcome(receipt, non_final)
        if receipt.status == 1:
            report.mined += 1
        else:
            report.reverted += 1
        report.replaced += len([h for h in non_final if h != receipt.tx_hash])

    async def _reconcile_nonce(
        self, sender: str, nonce: int, siblings: Sequence[TxRecord], report: ReconcileReport
    ) -> list[str]:
        hashes = [tx.tx_hash for tx in siblings]
        # The nonce is read BEFORE the receipts: a block mined in between then shows up in the
        # receipts, so "nonce passed and no receipt" really means another transaction took it.
        mined_nonce = await self.sender.read_w3.eth.get_transaction_count(
            AsyncWeb3.to_checksum_address(sender), "latest"
        )
        for tx in siblings:
            receipt = await self.sender.get_receipt(tx.tx_hash)
            if receipt is not None:
                await self._record(receipt, hashes, report)
                return []
        non_final = [tx for tx in siblings if tx.status in (TxStatus.SIGNED, TxStatus.SENT)]
        if mined_nonce > nonce:
            # The state may run ahead of the receipt index (Anvil right after mining, RPC load
            # balancers mixing nodes): give the receipts a grace period before calling it lost.
            receipt = await self.sender.wait_for_receipt(hashes, self.receipt_grace_s)
            if receipt is not None:
                await self._record(receipt, hashes, report)
                return []
            for tx in non_final:
                await self.journal.mark_dropped(
                    tx.tx_hash, f"nonce {nonce} was used by a transaction not in the journal"
                )
                report.dropped += 1
            return []
        in_pool = []
        for tx in non_final:
            if await self.sender.node_knows(tx.tx_hash):
                in_pool.append(tx)
                if tx.status == TxStatus.SIGNED:
                    await self.journal.mark_sent(tx.tx_hash)
        if not in_pool:
            newest = non_final[-1]
            try:
                await self.sender.broadcast(newest.raw_tx)
            except BroadcastRejected as exc:
                await self.journal.mark_dropped(
                    newest.tx_hash, f"rebroadcast rejected: {exc.reason}"
                )
                report.dropped += 1
                for tx in non_final[:-1]:
                    await self.journal.mark_dropped(tx.tx_hash, "superseded; rebroadcast failed")
                    report.dropped += 1
                return []
            if newest.status == TxStatus.SIGNED:
                await self.journal.mark_sent(newest.tx_hash)
            report.rebroadcast += 1
            log.warning("rebroadcast %s (nonce %d)", newest.tx_hash, nonce)
        return hashes

    async def _reconcile_intents(self, report: ReconcileReport) -> None:
        for record in await self.journal.list_non_final_intents():
            intent = record.intent
            txs = await self.journal.txs_for_intent(intent.id)
            if any(tx.status in (TxStatus.SIGNED, TxStatus.SENT) for tx in txs):
                continue  # still in flight: tracking or the next pass settles it
            if record.status == IntentStatus.PENDING and record.mode == "paper":
                await self.journal.set_intent_status(
                    intent.id, IntentStatus.CANCELLED, "interrupted before the paper fill"
                )
                report.intents_cancelled += 1
                continue
            trades = [tx for tx in txs if tx.purpose in TRADE_PURPOSES]
            mined = [tx for tx in trades if tx.status == TxStatus.MINED]
            reverted = [tx for tx in trades if tx.status == TxStatus.REVERTED]
            if mined:
                receipt = await self.sender.get_receipt(mined[0].tx_hash)
                if receipt is None:
                    report.notes.append(f"journal says {mined[0].tx_hash} mined; node disagrees")
                    continue
                gas_receipts = await _mined_receipts(self.sender, txs)
                fill = fill_from_receipt(intent, record.mode, mined[0], receipt, gas_receipts)
                await self.journal.record_fill(fill)
                report.intents_filled += 1
            elif reverted:
                reason = await self.sender.replay_revert_reason(reverted[0].tx_hash)
                await self.journal.set_intent_status(
                    intent.id, IntentStatus.REVERTED, f"{reverted[0].tx_hash}: {reason}"
                )
                report.notes.append(f"intent {intent.id} reverted: {reason}")
                report.intents_reverted += 1
            else:
                detail = (
                    "interrupted before signing"
                    if not txs
                    else "no trade transaction reached the chain"
                )
                await self.journal.set_intent_status(intent.id, IntentStatus.CANCELLED, detail)
                report.intents_cancelled += 1


# ---------------------------------------------------------------------------------------------
# Paper


class PaperExecutor:
    """Fills intents from local exact math, cross-checked against the chain with ``eth_call``.

    No key, no transaction. The chain quote comes from the DEXes' own view functions for each
    hop (V2 ``Router02.getAmountsOut``, V3 ``QuoterV2.quoteExactInputSingle``) at the latest
    block, whose number the fill records (``block_number``); when it differs from the local
    prediction the chain wins and the difference is logged. An aggregator route cannot be
    verified with ``eth_call`` and fails. The virtual portfolio lives in the journal
    (``paper_balances``) and moves in the same DB transaction as the fill.
    """

    def __init__(
        self,
        w3: AsyncWeb3[Any],
        journal: Journal,
        contracts: DexContracts,
        slippage_bps: int = 50,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.w3 = w3
        self.journal = journal
        self.contracts = contracts
        self.slippage_bps = slippage_bps
        self._clock = clock

    async def quote_route(
        self, route: Sequence[RouteHop], amount_in: int, block: int | str = "latest"
    ) -> int:
        """The route's output (smallest units) for ``amount_in`` at ``block``, hop by hop from
        on-chain quoters. Exact as long as no pool appears twice in the route."""
        amount = amount_in
        for hop in route:
            if hop.kind == AGGREGATOR_KIND:
                raise SimulationRevert("paper mode cannot verify an aggregator route on chain")
            if hop.kind == "v2":
                router = self.contracts.routers.get(hop.dex)
                if router is None:
                    raise FatalError(f"no router known for {hop.dex}")
                data = SEL_V2_GET_AMOUNTS_OUT + encode(
                    ["uint256", "address[]"], [amount, [hop.token_in, hop.token_out]]
                )
                (amounts,) = decode(["uint256[]"], await _eth_call(self.w3, router, data, block))
                amount = int(amounts[-1])
            else:
                if self.contracts.quoter_v2 is None:
                    raise FatalError("no QuoterV2 known for V3 paper quotes")
                data = SEL_QUOTE_EXACT_INPUT_SINGLE + encode(
                    ["(address,address,uint256,uint24,uint160)"],
                    [(hop.token_in, hop.token_out, amount, hop.fee_pips, 0)],
                )
                out = await _eth_call(self.w3, self.contracts.quoter_v2, data, block)
                amount = int.from_bytes(out[:32], "big")
        return amount

    async def execute(self, intent: Intent) -> ExecutionOutcome:
        """Journal ``intent``, quote it on chain, and fill it against the paper portfolio."""
        await self.journal.record_intent(intent, "paper")
        try:
            if intent.deadline <= int(self._clock()):
                raise SimulationRevert(f"intent deadline {intent.deadline} has passed")
            # one block for every hop, recorded on the fill: the quote can be replayed
            block = int(await self.w3.eth.block_number)
            chain_out = await self.quote_route(intent.route, intent.amount_in, block)
            if chain_out != intent.predicted_amount_out:
                log.warning(
                    "paper %s: local math predicted %d, the chain quotes %d (diff %d)",
                    intent.id,
                    intent.predicted_amount_out,
                    chain_out,
                    chain_out - intent.predicted_amount_out,
                )
            floor = max(
                intent.min_amount_out,
                min_amount_out(intent.predicted_amount_out, self.slippage_bps),
            )
            if intent.kind == "arb":
                floor = max(
                    floor, intent.amount_in + min_profit(intent.predicted_profit, self.slippage_bps)
                )
            if chain_out < floor:
                raise SimulationRevert(f"output {chain_out} below the minimum {floor}")
            fill = Fill(
                intent_id=intent.id,
                mode="paper",
                tx_hash=None,
                token_in=intent.token_in,
                token_out=intent.token_out,
                amount_in=intent.amount_in,
                amount_out=chain_out,
                profit=chain_out - intent.amount_in if intent.kind == "arb" else 0,
                predicted_amount_in=intent.amount_in,
                predicted_amount_out=intent.predicted_amount_out,
                predicted_profit=intent.predicted_profit,
                predicted_profit_usd=intent.predicted_profit_usd,
                block_number=block,
            )
            await self.journal.record_fill(fill, move_paper_balances=True)
        except (SimulationRevert, InsufficientPaperBalance) as exc:
            reason = exc.reason if isinstance(exc, SimulationRevert) else str(exc)
            await self.journal.set_intent_status(intent.id, IntentStatus.FAILED, reason)
            return ExecutionOutcome(intent.id, IntentStatus.FAILED, detail=reason)
        return ExecutionOutcome(intent.id, IntentStatus.FILLED, fill=fill)


# ---------------------------------------------------------------------------------------------
# Deployment


async def deploy_arb_executor(
    sender: TransactionSender,
    v3_factory: str,
    v2_init_code_hashes: Mapping[str, bytes],
    timeout_s: float = 180.0,
) -> str:
    """Deploy ArbExecutor from ``sender``'s account (which becomes its owner); returns the
    contract address. ``v2_init_code_hashes`` maps each accepted V2 factory to its pair
    init-code hash. The creation transaction is simulated and journaled like any other."""
    from agent.chain.arb_executor import encode_deployment, load_arb_executor_artifact

    creation = encode_deployment(load_arb_executor_artifact(), v3_factory, v2_init_code_hashes)
    sent = await sender.send(TxRequest(to=None, data=creation, purpose="deploy"))
    receipt, _ = await sender.track(sent, timeout_s=timeout_s)
    if receipt.status != 1 or receipt.contract_address is None:
        raise FatalError(f"ArbExecutor deployment {receipt.tx_hash} failed")
    return receipt.contract_address
