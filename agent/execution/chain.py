"""Intent -> transaction -> fill on a real chain: one code path for live and fork.

Chain execution of one intent (``ChainExecutor.execute``):

1. journal the intent (``pending``) before any I/O;
2. directional swap: the tokens' transfers probed (``token_probe``: a token that refuses us
   fails the intent as ``TokenRefused``; a fee-on-transfer token goes through V2's
   fee-supporting router function with the minimum scaled by what arrives, and is refused on
   V3); exact approval of ``amount_in`` to the router (an outstanding allowance reset to 0
   first, for every token: USDT-style approvals revert from non-zero to non-zero), mined before
   the swap is simulated; arbitrage: nothing to approve, the ArbExecutor spends its own balance;
3. calldata with ``amountOutMinimum`` = the local prediction minus the slippage limit (floored)
   and a deadline; for arbitrage ``minProfit`` = the predicted profit minus the slippage limit;
4. ``TransactionSender.send``: simulate, the signing guard (``agent.execution.policy``: the risk
   gate's last look, target, calldata, simulated balance changes, each request carrying its
   ``TxMandate``), sign, journal, broadcast; ``track``: receipt, replacement when stuck. In
   bundle mode an arbitrage goes through ``agent.chain.bundle.BundleSender`` instead: the same
   checks and signature, then the relay's simulation, then a bundle for the next blocks,
   included whole or not at all (not included: the intent fails, nothing moved);
5. settle: realised amounts from the receipt's ``Transfer`` logs, cross-checked against the
   balance delta between the block before and the block of the receipt, stored beside the
   predicted amounts.

Aggregator (1inch) routes: a swap intent whose single hop has ``kind == "aggregator"`` (DCA's
1inch route) is executed through the 1inch client's ``build_swap`` when the executor was given
one (a real 1inch client, live or fork): the returned transaction must come from our wallet and
carry no ETH; 1inch's router enforces a minimum output derived from the same ``slippage_bps``,
so the swap is refused unless that minimum (1inch's ``dstAmount`` less the slippage) is at
least our own floor; the signing policy then holds the answer to the intent (the chain's 1inch
router, v6 calldata with our tokens, amount, receiver and floor) before the exact approval of
``amount_in`` goes to that router, and again, with the simulated balance changes, immediately
before the swap is signed. Without a 1inch client
(simulated feeds) and in paper mode (no ``eth_call`` can verify a 1inch route) the intent fails
at once with a clear reason; the wiring also tells the strategies so
(``MarketSnapshot.aggregator_executable``), so DCA does not propose such routes there.

Amounts are ``int`` in smallest units throughout; ``slippage_bps`` is in basis points.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Protocol

from eth_abi import encode
from eth_utils import keccak
from web3 import AsyncWeb3

from agent.chain.abi import SEL_APPROVE, erc20_allowance, erc20_balance
from agent.chain.arb_executor import (
    decode_arb_executor_error,
    encode_execute,
    encode_execute_with_flash_loan,
    hops_from_route,
)
from agent.chain.bundle import BundleSender
from agent.chain.l1fee import ChainFees, ExtraFees
from agent.chain.tx import FeePolicy, Receipt, TransactionSender, TxMandate, TxRequest
from agent.errors import (
    AgentError,
    BroadcastRejected,
    BundleNotIncluded,
    FatalError,
    SimulationRevert,
    TemporaryError,
    TokenRefused,
)
from agent.events import EventBus, TradeSent
from agent.execution.common import (
    NO_AGGREGATOR,
    SEL_MULTICALL_DEADLINE,
    SEL_V2_SWAP_EXACT_TOKENS,
    SEL_V2_SWAP_FEE_ON_TRANSFER,
    SEL_V3_02_EXACT_INPUT,
    SEL_V3_02_EXACT_INPUT_SINGLE,
    SEL_V3_EXACT_INPUT,
    SEL_V3_EXACT_INPUT_SINGLE,
    SWAP_ROUTER,
    SWAP_ROUTER02,
    DexContracts,
    ExecutionOutcome,
    is_aggregator_route,
    min_amount_out,
    min_profit,
)
from agent.execution.settlement import (
    _mined_receipts,
    _trade_account,
    fill_from_receipt,
    finality_at_settlement,
    with_l1_fees,
)
from agent.execution.token_probe import PPM, probe_transfer
from agent.feeds.oneinch import OneInchSwap
from agent.store.journal import Journal, TxRecord
from agent.store.models import IntentStatus, TxStatus
from agent.types import Fill, Intent, RouteHop

log = logging.getLogger(__name__)

# Steps reported to the step hook (besides the sender's tx_* steps).
STEP_INTENT_RECORDED = "intent_recorded"
STEP_APPROVED = "approved"
STEP_SETTLED = "settled"

StepHook = Callable[[str], Awaitable[None]]


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


# ---------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True, slots=True)
class ExecutionSettings:
    """How intents are carried out. ``mode`` is "live" or "fork" (the same code path)."""

    mode: str = "fork"
    slippage_bps: int = 50
    deadline_s: int = 120
    receipt_timeout_s: float = 180.0
    replace_after_s: float | None = 60.0
    max_replacements: int = 3
    # Blocks (the receipt's included) before a fill is final; until then it is pending.
    confirmations: int = 1


def settings_from_config(execution: Any) -> tuple[ExecutionSettings, FeePolicy]:
    """``ExecutionSettings`` and ``FeePolicy`` from ``agent.config.models.ExecutionConfig``."""
    mode = "fork" if execution.mode == "demo" else str(execution.mode)
    settings = ExecutionSettings(
        mode=mode,
        slippage_bps=int(execution.slippage_bps),
        deadline_s=int(execution.deadline_s),
        receipt_timeout_s=float(execution.receipt_timeout_s),
        replace_after_s=float(execution.replace_after_s),
        confirmations=int(execution.confirmations),
    )
    policy = FeePolicy(
        max_fee_per_gas_cap_wei=int(execution.max_fee_wei),
        priority_fee_cap_wei=int(execution.max_priority_fee_wei),
        gas_limit_margin_bps=int(execution.gas_limit_margin_pct) * 100,
        replacement_bump_bps=int(execution.fee_bump_pct * 100),
    )
    return settings, policy


# ---------------------------------------------------------------------------------------------
# Calldata


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
    intent: Intent,
    recipient: str,
    amount_out_minimum: int,
    deadline: int,
    router_kind: str = SWAP_ROUTER,
) -> bytes:
    """Router calldata for a directional swap: V2 ``swapExactTokensForTokens``, V3
    ``exactInputSingle`` (one hop) or ``exactInput`` (several hops) in the ABI of
    ``router_kind``: SwapRouter's (deadline in the params) or SwapRouter02's (see
    :func:`encode_swap_router02`)."""
    _, kind = _single_dex(intent.route)
    if kind == "v3" and router_kind == SWAP_ROUTER02:
        return encode_swap_router02(intent, recipient, amount_out_minimum, deadline)
    if kind == "v3" and router_kind != SWAP_ROUTER:
        raise FatalError(f"unknown V3 router kind {router_kind!r}")
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


def encode_swap_router02(
    intent: Intent, recipient: str, amount_out_minimum: int, deadline: int
) -> bytes:
    """SwapRouter02 calldata for a V3 swap: ``multicall(deadline, [exactInputSingle(...)])``
    (or ``exactInput`` for several hops); its structs carry no deadline, the multicall
    enforces it."""
    if len(intent.route) == 1:
        hop = intent.route[0]
        swap = SEL_V3_02_EXACT_INPUT_SINGLE + encode(
            ["(address,address,uint24,address,uint256,uint256,uint160)"],
            [
                (
                    hop.token_in,
                    hop.token_out,
                    hop.fee_pips,
                    recipient,
                    intent.amount_in,
                    amount_out_minimum,
                    0,
                )
            ],
        )
    else:
        swap = SEL_V3_02_EXACT_INPUT + encode(
            ["(bytes,address,uint256,uint256)"],
            [(encode_v3_path(intent.route), recipient, intent.amount_in, amount_out_minimum)],
        )
    return SEL_MULTICALL_DEADLINE + encode(["uint256", "bytes[]"], [deadline, [swap]])


# ---------------------------------------------------------------------------------------------
# Live and fork


# A 1inch swap's calldata is known only once 1inch builds it: its L1 fee is priced for this
# many incompressible bytes (a pseudo-random filler: zeros would compress to nothing).
_UNKNOWN_CALLDATA = b"".join(keccak(i.to_bytes(2, "big")) for i in range(1_200 // 32 + 1))[:1_200]
_NO_ADDRESS = "0x" + "00" * 20


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
        events: EventBus | None = None,
        l1_fees: ChainFees | None = None,
        bundles: BundleSender | None = None,
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
        self.events = events
        # L2s: prices the L1 data fee (and OP's operator fee) of each trade (None: no L1 fee).
        self.l1_fees = l1_fees
        # bundle mode: arbitrage goes to the relays as a bundle (None: through the sender)
        self.bundles = bundles
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
                if self.bundles is not None and intent.kind == "arb":
                    receipt, winner_hash = await self._send_bundle(intent, request)
                else:
                    sent = await self.sender.send(request, intent_id=intent.id)
                    self._published_sent(intent, sent.tx_hash)
                    receipt, winner = await self.sender.track(
                        sent,
                        timeout_s=self.settings.receipt_timeout_s,
                        stuck_after_s=self.settings.replace_after_s,
                        max_replacements=self.settings.max_replacements,
                    )
                    winner_hash = winner.tx_hash
        except TokenRefused as exc:
            outcome = await self._fail(intent, exc.reason)
            return replace(outcome, refused_token=exc.token)
        except BundleNotIncluded as exc:
            return await self._fail(intent, str(exc))
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
        trade_tx = await self.journal.get_tx(winner_hash)
        outcome = await self._settle(intent, trade_tx, receipt, cross_check=True)
        await self._step(STEP_SETTLED)
        return outcome

    async def _send_bundle(self, intent: Intent, request: TxRequest) -> tuple[Receipt, str]:
        """``request`` as a one-transaction bundle: simulated at the relay, submitted for the
        next blocks, tracked until included. Not included: ``BundleNotIncluded`` (nothing
        moved; the nonce is free again)."""
        assert self.bundles is not None
        bundle = await self.bundles.send([request], intent_id=intent.id)
        self._published_sent(intent, bundle.txs[-1].tx_hash)
        receipts = await self.bundles.track(bundle, timeout_s=self.settings.receipt_timeout_s)
        if receipts is None:
            raise BundleNotIncluded(bundle.bundle_hash, bundle.first_block, bundle.last_block)
        return receipts[-1], receipts[-1].tx_hash

    def _published_sent(self, intent: Intent, tx_hash: str) -> None:
        if self.events is not None:
            self.events.publish(
                TradeSent(
                    trade_id=intent.id,
                    strategy=intent.strategy,
                    route=" -> ".join(hop.dex for hop in intent.route),
                    tx_hash=tx_hash,
                    token_in=intent.token_in,
                    amount_in_wei=intent.amount_in,
                    predicted_profit_usd=intent.predicted_profit_usd,
                )
            )

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
        arrives_ppm = await self._arriving_ppm(intent)
        if arrives_ppm < PPM:
            request = self._fee_supporting_swap(intent, router, arrives_ppm)
            await self._vet(request)
            await self.ensure_exact_allowance(
                intent.id, intent.token_in, router, intent.amount_in, intent=intent
            )
            return request
        amount_out_minimum = max(
            intent.min_amount_out,
            min_amount_out(intent.predicted_amount_out, self.settings.slippage_bps),
        )
        calldata = encode_router_swap(
            intent,
            self.sender.address,
            amount_out_minimum,
            self._deadline(intent),
            self.contracts.router_kinds.get(dex, SWAP_ROUTER),
        )
        request = TxRequest(
            to=router,
            data=calldata,
            purpose="swap",
            mandate=TxMandate("swap", intent, min_out=amount_out_minimum),
        )
        await self._vet(request)
        await self.ensure_exact_allowance(
            intent.id, intent.token_in, router, intent.amount_in, intent=intent
        )
        return request

    async def _vet(self, request: TxRequest) -> None:
        """The signing guard's target and calldata checks, before any approval is granted for
        this trade (the full check, with simulation, runs again immediately before signing)."""
        if self.sender.guard is not None:
            await self.sender.guard.vet(request)

    async def _arriving_ppm(self, intent: Intent) -> int:
        """Millionths of the swap's output that reach us after the tokens' transfer fees: the
        input as it reaches the first pool, the output as it reaches the wallet, both measured by
        simulated transfers. Raises ``TokenRefused`` for a token that reverts for us."""
        first, last = intent.route[0], intent.route[-1]
        wallet = self.sender.address
        sent_in = await probe_transfer(
            self.w3, intent.token_in, wallet, first.pool, intent.amount_in
        )
        received = await probe_transfer(
            self.w3, intent.token_out, last.pool, wallet, max(intent.predicted_amount_out, 1)
        )
        ppm = PPM
        for probe in (sent_in, received):
            if probe is not None and probe.takes_fee:
                ppm = ppm * probe.arrived_ppm // PPM
        return ppm

    def _fee_supporting_swap(self, intent: Intent, router: str, arrives_ppm: int) -> TxRequest:
        """V2 ``swapExactTokensForTokensSupportingFeeOnTransferTokens`` with the minimum scaled
        by what arrives: a V2 output is concave in its input, so ``predicted * ppm`` is a floor
        of what the fee-reduced input yields. V3 pools revert on a short-paid input: refused.

        The signing guard is shown the intent restated with that measured minimum (what the
        tokens' fees leave of it), so it still holds the calldata to a floor."""
        if intent.route[0].kind != "v2":
            raise FatalError(
                f"a fee-on-transfer token ({PPM - arrives_ppm} ppm lost to fees) cannot be "
                "swapped through V3 pools; only V2 pairs support it"
            )
        floor = min_amount_out(
            intent.predicted_amount_out * arrives_ppm // PPM, self.settings.slippage_bps
        )
        minimum = max(intent.min_amount_out * arrives_ppm // PPM, floor)
        path = [intent.route[0].token_in, *(hop.token_out for hop in intent.route)]
        calldata = SEL_V2_SWAP_FEE_ON_TRANSFER + encode(
            ["uint256", "uint256", "address[]", "address", "uint256"],
            [intent.amount_in, minimum, path, self.sender.address, self._deadline(intent)],
        )
        measured = replace(intent, min_amount_out=minimum)
        return TxRequest(
            to=router,
            data=calldata,
            purpose="swap",
            mandate=TxMandate("swap", measured, min_out=minimum),
        )

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
        request = TxRequest(
            to=router,
            data=data,
            purpose="swap",
            mandate=TxMandate("aggregator_swap", intent, min_out=floor),
        )
        # 1inch's answer is held to the intent before the router 1inch named gets an allowance
        await self._vet(request)
        await self.ensure_exact_allowance(
            intent.id, intent.token_in, router, intent.amount_in, intent=intent
        )
        return request

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
        return TxRequest(
            to=executor,
            data=calldata,
            purpose="arb",
            mandate=TxMandate("arb", intent, min_out=floor),
        )

    async def ensure_exact_allowance(
        self,
        intent_id: str | None,
        token: str,
        spender: str,
        amount: int,
        *,
        intent: Intent | None = None,
    ) -> None:
        """Make ``token.allowance(wallet, spender) == amount`` exactly (never unlimited): reset
        to 0 first whatever the token (USDT-style tokens revert otherwise); each approval is mined
        before returning. ``intent`` is the trade the allowance is for (the signing guard holds it
        to it)."""
        current = await erc20_allowance(self.w3, token, self.sender.address, spender)
        if current == amount:
            return
        if current != 0:  # approve() from non-zero to non-zero reverts on USDT-style tokens
            await self._approve(intent_id, token, spender, 0, intent)
        await self._approve(intent_id, token, spender, amount, intent)
        await self._step(STEP_APPROVED)

    async def _approve(
        self, intent_id: str | None, token: str, spender: str, amount: int, intent: Intent | None
    ) -> None:
        data = SEL_APPROVE + encode(["address", "uint256"], [spender, amount])
        mandate = TxMandate("approve", intent, token=token, spender=spender, amount=amount)
        sent = await self.sender.send(
            TxRequest(to=token, data=data, purpose="approve", mandate=mandate),
            intent_id=intent_id,
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
        gas_receipts = await with_l1_fees(
            await _mined_receipts(self.sender, await self.journal.txs_for_intent(intent.id)),
            self.l1_fees,
        )
        fill = fill_from_receipt(
            intent,
            self.settings.mode,
            trade_tx,
            receipt,
            gas_receipts,
            finality_at_settlement(self.settings.confirmations),
        )
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

    async def extra_fees(self, intent: Intent, gas_units: int) -> ExtraFees:
        """What the chain would charge the transaction carrying ``intent`` out now beyond
        ``gas_units x price`` (wei): the L1 data fee and, on OP stack since Isthmus, the
        operator fee for ``gas_units``.

        An arbitrage is priced exactly: its ArbExecutor call is built as :meth:`execute`
        would build it; on the OP stack the oracle prices the unsigned transaction ``send``
        would sign (same gas estimate, fees and nonce), so the prediction matches the realised
        fee to the oracle's rounding while the L1 inputs hold. A swap is priced from its router
        calldata (the OP stack: the oracle's ``getL1FeeUpperBound`` for it plus the envelope;
        it cannot be built before its allowance), a 1inch swap from an allowance of bytes.
        """
        if self.l1_fees is None:
            return ExtraFees()
        unsigned = None
        if intent.kind == "arb":
            request = await self._arb_request(intent)
            to, data = request.to or "", request.data
            if self.l1_fees.needs_unsigned:
                try:
                    unsigned = await self.sender.unsigned_preview(request)
                except (SimulationRevert, TemporaryError) as exc:
                    log.debug("L1 fee of %s: no exact preview (%s): upper bound", intent.id, exc)
        else:
            to, data = self._planned_swap(intent)
        return await self.l1_fees.predict(to, data, gas_units, unsigned)

    def _planned_swap(self, intent: Intent) -> tuple[str, bytes]:
        """Target and calldata of ``intent``'s swap as far as it can be known before its
        approval (router calldata; a 1inch swap's size only), for pricing its L1 fee."""
        if is_aggregator_route(intent.route):
            return _NO_ADDRESS, _UNKNOWN_CALLDATA
        dex, _ = _single_dex(intent.route)
        calldata = encode_router_swap(
            intent,
            self.sender.address,
            intent.min_amount_out,
            self._deadline(intent),
            self.contracts.router_kinds.get(dex, SWAP_ROUTER),
        )
        return self.contracts.routers.get(dex, _NO_ADDRESS), calldata

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


# ---------------------------------------------------------------------------------------------
# Deployment


async def deploy_arb_executor(
    sender: TransactionSender,
    v3_factory: str,
    v2_init_code_hashes: Mapping[str, bytes],
    timeout_s: float = 180.0,
    owner: str | None = None,
) -> str:
    """Deploy ArbExecutor from ``sender``'s account (which becomes its executor, the key that
    trades); ``owner`` (where withdrawals go; default the sender) may be a cold address.
    Returns the contract address. ``v2_init_code_hashes`` maps each accepted V2 factory to its
    pair init-code hash. The creation transaction is simulated and journaled like any other."""
    from agent.chain.arb_executor import encode_deployment, load_arb_executor_artifact

    creation = encode_deployment(
        load_arb_executor_artifact(), v3_factory, v2_init_code_hashes, owner=owner
    )
    sent = await sender.send(
        TxRequest(to=None, data=creation, purpose="deploy", mandate=TxMandate("deploy"))
    )
    receipt, _ = await sender.track(sent, timeout_s=timeout_s)
    if receipt.status != 1 or receipt.contract_address is None:
        raise FatalError(f"ArbExecutor deployment {receipt.tx_hash} failed")
    return receipt.contract_address
