"""What the signing policy reads in calldata, without a chain: 1inch v6 router calls (``swap``
and the ``unoswap`` family), and the target and calldata checks it makes before any approval
(``SigningPolicy.vet``) for our own router calls, approvals and ArbExecutor calls."""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_abi import encode
from eth_utils.crypto import keccak
from web3 import AsyncHTTPProvider, AsyncWeb3

from agent.chain.arb_executor import Hop, HopKind, encode_execute
from agent.chain.tx import TxMandate, TxRequest
from agent.errors import SigningRefused, UnknownRouterCall
from agent.execution import DexContracts
from agent.execution.chain import encode_router_swap, encode_swap_router02
from agent.execution.policy import SigningPolicy
from agent.feeds.oneinch import RouterCall, decode_router_call
from agent.types import Intent, RouteHop

WALLET = "0x1111111111111111111111111111111111111111"
ROUTER_V2 = "0x2222222222222222222222222222222222222222"
ONEINCH = "0x111111125421cA6dc452d289314280a0f8842A65"
ARB = "0x3333333333333333333333333333333333333333"
USDC = "0x4444444444444444444444444444444444444444"
WETH = "0x5555555555555555555555555555555555555555"
POOL = "0x6666666666666666666666666666666666666666"
OTHER = "0x000000000000000000000000000000000000dEaD"
DESC = "(address,address,address,address,uint256,uint256,uint256)"


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def address_word(address: str, flags: int = 0) -> int:
    """1inch's ``Address`` type: the address in the low 160 bits, flags above."""
    return int(address, 16) | (flags << 160)


def v6_swap(receiver: str = WALLET, min_return: int = 990, flags: int = 0) -> bytes:
    desc = (USDC, WETH, POOL, receiver, 1_000, min_return, flags)
    return selector(f"swap(address,{DESC},bytes)") + encode(
        ["address", DESC, "bytes"], [POOL, desc, b"\x01\x02"]
    )


def test_v6_swap_decodes_tokens_amount_minimum_and_receiver() -> None:
    call = decode_router_call(v6_swap())
    assert call == RouterCall("swap", USDC, WETH, 1_000, 990, WALLET, 0)
    assert decode_router_call(v6_swap(receiver="0x" + "00" * 20)).receiver is None


def test_the_unoswap_family_decodes_with_flags_stripped_from_addresses() -> None:
    flags = 1 << 93  # 1inch packs protocol and direction bits above the address
    words = [address_word(USDC), 1_000, 990, address_word(POOL, flags)]
    unoswap = selector("unoswap(uint256,uint256,uint256,uint256)") + encode(["uint256"] * 4, words)
    assert decode_router_call(unoswap) == RouterCall("unoswap", USDC, None, 1_000, 990, None)

    to_words = [address_word(OTHER), *words, address_word(POOL), address_word(POOL)]
    unoswap_to3 = selector("unoswapTo3(uint256,uint256,uint256,uint256,uint256,uint256,uint256)")
    call = decode_router_call(unoswap_to3 + encode(["uint256"] * 7, to_words))
    assert (call.function, call.src_token, call.receiver) == ("unoswapTo3", USDC, OTHER)


@pytest.mark.parametrize(
    "calldata",
    [
        selector("ethUnoswap(uint256,uint256)") + encode(["uint256"] * 2, [990, 1]),  # ETH in
        bytes.fromhex("deadbeef") + b"\x00" * 64,
        v6_swap()[:40],  # cut short
        b"",
    ],
)
def test_anything_else_is_an_unknown_router_call(calldata: bytes) -> None:
    with pytest.raises(UnknownRouterCall):
        decode_router_call(calldata)


# -- the policy's checks before any approval ---------------------------------------------------


def policy() -> SigningPolicy:
    contracts = DexContracts({"uniswap_v2": ROUTER_V2}, {"uniswap_v2": POOL}, arb_executor=ARB)
    # vet() never touches the chain: the provider is never called
    w3 = AsyncWeb3(AsyncHTTPProvider("http://127.0.0.1:9"))
    return SigningPolicy(w3, WALLET, contracts, oneinch_router=ONEINCH)


def swap_intent(kind: str = "v2", min_amount_out: int = 980) -> Intent:
    hop = RouteHop(POOL, "uniswap_v2" if kind == "v2" else "oneinch", kind, USDC, WETH, 3000)
    return Intent(
        id="swap-1",
        strategy="test",
        kind="swap",
        route=(hop,),
        token_in=USDC,
        token_out=WETH,
        amount_in=1_000,
        min_amount_out=min_amount_out,
        predicted_amount_out=1_000,
        predicted_profit=0,
        predicted_profit_usd=0.0,
        deadline=2**40,
    )


async def refusal(request: TxRequest) -> str:
    with pytest.raises(SigningRefused) as info:
        await policy().vet(request)
    return f"{info.value.rule}: {info.value.reason}"


async def test_our_router_swap_passes_and_a_changed_one_is_refused() -> None:
    intent = swap_intent()
    mandate = TxMandate("swap", intent, min_out=985)
    honest = encode_router_swap(intent, WALLET, 985, 2**40)
    await policy().vet(TxRequest(to=ROUTER_V2, data=honest, purpose="swap", mandate=mandate))

    elsewhere = encode_router_swap(intent, OTHER, 985, 2**40)
    assert "not our wallet" in await refusal(TxRequest(ROUTER_V2, elsewhere, mandate=mandate))
    loose = encode_router_swap(intent, WALLET, 1, 2**40)
    assert "below our floor 985" in await refusal(TxRequest(ROUTER_V2, loose, mandate=mandate))
    assert (await refusal(TxRequest(OTHER, honest, mandate=mandate))).startswith("target:")
    assert "ETH" in await refusal(TxRequest(ROUTER_V2, honest, value_wei=1, mandate=mandate))


async def test_swap_router02_multicalls_are_read_through_to_their_one_swap() -> None:
    v3_hop = RouteHop(POOL, "uniswap_v2", "v3", USDC, WETH, 500)
    intent = replace(swap_intent(), route=(v3_hop,))
    mandate = TxMandate("swap", intent, min_out=985)
    honest = encode_swap_router02(intent, WALLET, 985, 2**40)
    await policy().vet(TxRequest(ROUTER_V2, honest, mandate=mandate))
    multihop = replace(
        intent, route=(replace(v3_hop, token_out=POOL), replace(v3_hop, token_in=POOL))
    )
    await policy().vet(
        TxRequest(ROUTER_V2, encode_swap_router02(multihop, WALLET, 985, 2**40), mandate=mandate)
    )

    elsewhere = encode_swap_router02(intent, OTHER, 985, 2**40)
    assert "not our wallet" in await refusal(TxRequest(ROUTER_V2, elsewhere, mandate=mandate))
    bundle = selector("multicall(uint256,bytes[])") + encode(
        ["uint256", "bytes[]"], [2**40, [honest[4:], b"\x01\x02\x03\x04"]]
    )
    assert "2 calls" in await refusal(TxRequest(ROUTER_V2, bundle, mandate=mandate))


async def test_1inch_swaps_are_held_to_the_intent() -> None:
    mandate = TxMandate("aggregator_swap", swap_intent("aggregator"), min_out=985)
    await policy().vet(TxRequest(ONEINCH, v6_swap(), mandate=mandate))
    assert "partial fill" in await refusal(TxRequest(ONEINCH, v6_swap(flags=1), mandate=mandate))
    assert "below our floor" in await refusal(
        TxRequest(ONEINCH, v6_swap(min_return=984), mandate=mandate)
    )
    wrong_router = await refusal(TxRequest(ROUTER_V2, v6_swap(), mandate=mandate))
    assert wrong_router.startswith("target:")


async def test_approvals_are_exact_and_only_to_allowlisted_spenders() -> None:
    intent = swap_intent()
    approve = selector("approve(address,uint256)")

    def request(spender: str, amount: int) -> TxRequest:
        data = approve + encode(["address", "uint256"], [spender, amount])
        mandate = TxMandate("approve", intent, token=USDC, spender=spender, amount=amount)
        return TxRequest(USDC, data, purpose="approve", mandate=mandate)

    await policy().vet(request(ROUTER_V2, 1_000))
    await policy().vet(request(ONEINCH, 0))  # a reset to zero
    assert "not an allowlisted spender" in await refusal(request(OTHER, 1_000))
    assert "not the exact amount" in await refusal(request(ROUTER_V2, 2**256 - 1))


async def test_arbitrage_calls_are_held_to_start_token_amount_and_profit_floor() -> None:
    hops = [
        Hop(HopKind.V2, POOL, USDC, WETH, 3000, POOL),
        Hop(HopKind.V2, POOL, WETH, USDC, 3000, POOL),
    ]
    intent = Intent(
        id="arb-1",
        strategy="test",
        kind="arb",
        route=tuple(
            RouteHop(POOL, "uniswap_v2", "v2", h.token_in, h.token_out, 3000) for h in hops
        ),
        token_in=USDC,
        token_out=USDC,
        amount_in=1_000,
        min_amount_out=1_010,
        predicted_amount_out=1_020,
        predicted_profit=20,
        predicted_profit_usd=0.0,
        deadline=2**40,
    )
    mandate = TxMandate("arb", intent, min_out=10)
    await policy().vet(
        TxRequest(ARB, encode_execute(hops, USDC, 1_000, 10, 2**40), mandate=mandate)
    )
    assert "below our floor" in await refusal(
        TxRequest(ARB, encode_execute(hops, USDC, 1_000, 0, 2**40), mandate=mandate)
    )
    assert "spends 5000" in await refusal(
        TxRequest(ARB, encode_execute(hops, USDC, 5_000, 10, 2**40), mandate=mandate)
    )
    withdraw = selector("withdrawToken(address,uint256)") + encode(
        ["address", "uint256"], [USDC, 1]
    )
    assert "unknown ArbExecutor function" in await refusal(
        TxRequest(ARB, withdraw, mandate=mandate)
    )
