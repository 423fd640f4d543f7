"""Shared by the executors: slippage floors, router selectors, DEX addresses and the outcome of
an intent.

Amounts are ``int`` in smallest units throughout; ``slippage_bps`` is in basis points.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from agent.chain.abi import selector
from agent.dex.prices import min_amount_out as min_amount_out  # the executors' floor
from agent.store.models import IntentStatus
from agent.types import Fill, RouteHop

BPS = 10_000


SEL_V2_SWAP_EXACT_TOKENS = selector(
    "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)"
)
# Router02's variant for tokens that take a fee on transfer: the output is checked by balance.
SEL_V2_SWAP_FEE_ON_TRANSFER = selector(
    "swapExactTokensForTokensSupportingFeeOnTransferTokens(uint256,uint256,address[],address,uint256)"
)
SEL_V2_GET_AMOUNTS_OUT = selector("getAmountsOut(uint256,address[])")
SEL_V3_EXACT_INPUT_SINGLE = selector(
    "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))"
)
SEL_V3_EXACT_INPUT = selector("exactInput((bytes,address,uint256,uint256,uint256))")
# SwapRouter02 (swap-router-contracts): no deadline in the structs; it goes into multicall.
SEL_V3_02_EXACT_INPUT_SINGLE = selector(
    "exactInputSingle((address,address,uint24,address,uint256,uint256,uint160))"
)
SEL_V3_02_EXACT_INPUT = selector("exactInput((bytes,address,uint256,uint256))")
SEL_MULTICALL_DEADLINE = selector("multicall(uint256,bytes[])")
# V3 router kinds (agent.chain.registry.SWAP_ROUTER / SWAP_ROUTER02).
SWAP_ROUTER = "swap_router"
SWAP_ROUTER02 = "swap_router02"
SEL_QUOTE_EXACT_INPUT_SINGLE = selector(
    "quoteExactInputSingle((address,address,uint256,uint24,uint160))"
)


AGGREGATOR_KIND = "aggregator"
NO_AGGREGATOR = "no 1inch client configured: an aggregator route cannot be executed here"


def is_aggregator_route(route: Sequence[RouteHop]) -> bool:
    """True when the route goes through an aggregator (1inch) instead of named pools."""
    return any(hop.kind == AGGREGATOR_KIND for hop in route)


def min_profit(predicted_profit: int, slippage_bps: int) -> int:
    """The arbitrage profit floor: the prediction minus ``slippage_bps``, never below 0 (the
    ArbExecutor then still refuses to lose money)."""
    return max(0, predicted_profit * (BPS - slippage_bps) // BPS)


# ---------------------------------------------------------------------------------------------
# Addresses


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
    # V3 DEX name -> "swap_router" or "swap_router02": which ABI its router speaks.
    router_kinds: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_addresses(
        cls,
        addresses: Mapping[str, str],
        arb_executor: str | None = None,
        router_kinds: Mapping[str, str] | None = None,
    ) -> DexContracts:
        """From a deployment/registry address map ("uniswap_v2.router", ... as the devnet).

        A V3 DEX swaps through its ``swap_router`` when one is listed, else through its
        ``swap_router02``; ``router_kinds`` overrides what the keys imply."""
        routers: dict[str, str] = {}
        factories: dict[str, str] = {}
        kinds: dict[str, str] = {}
        for key, address in addresses.items():
            dex, _, role = key.partition(".")
            if role in ("router", "swap_router"):
                routers[dex] = address
                if role == SWAP_ROUTER:
                    kinds[dex] = SWAP_ROUTER
            elif role == SWAP_ROUTER02 and f"{dex}.{SWAP_ROUTER}" not in addresses:
                routers[dex] = address
                kinds[dex] = SWAP_ROUTER02
            elif role == "factory":
                factories[dex] = address
        kinds.update(router_kinds or {})
        return cls(routers, factories, addresses.get("uniswap_v3.quoter_v2"), arb_executor, kinds)


@dataclass(frozen=True, slots=True)
class ExecutionOutcome:
    """What became of an intent: its journal status, the fill when filled, and why if not."""

    intent_id: str
    status: IntentStatus
    fill: Fill | None = None
    detail: str | None = None
    # A token that reverted a transfer to or from us (blocklist, pause): cool it down.
    refused_token: str | None = None
