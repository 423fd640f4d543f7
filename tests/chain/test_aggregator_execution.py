"""DCA's 1inch route executed honestly: through the 1inch client's ``/swap`` (a local fake of the
documented API whose router is a real router on the devnet), with an exact approval to the
router 1inch names, our minimum output enforced, simulation before signing; and refused with a
clear reason wherever no 1inch swap can be built (no client, paper mode)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector
from web3 import AsyncWeb3

from agent.chain.tx import TransactionSender
from agent.devnet import Devnet
from agent.execution import (
    NO_AGGREGATOR,
    ChainExecutor,
    DexContracts,
    ExecutionSettings,
    PaperExecutor,
    erc20_allowance,
    erc20_balance,
)
from agent.feeds.http import SourcePolicy
from agent.feeds.oneinch import OneInchClient
from agent.store import IntentStatus, Journal
from agent.types import Intent, RouteHop
from tests.chain._execution_helpers import journal_at, make_sender
from tests.fakes.http_fakes import FakeServer

pytestmark = pytest.mark.chain

CHAIN_ID = 31337
FAR_DEADLINE = 2**40
API_KEY = "test-1inch-key-not-a-secret-elsewhere"
SLIPPAGE_BPS = 50


def _selector(signature: str) -> bytes:
    return function_signature_to_4byte_selector(signature)


@dataclass
class OneInchSwapFake:
    """``/swap`` of the 1inch API v6.0 answering with a transaction to ``router``.

    On the devnet the "1inch router" is Uniswap's Router02: the transaction is a real
    ``swapExactTokensForTokens`` paying ``from`` with 1inch's minimum return (``dstAmount``
    less ``slippage`` percent). ``dst_amounts`` are set by the test; requests are recorded.
    """

    router: str
    server: FakeServer = field(default_factory=lambda: FakeServer("1inch"))
    dst_amounts: dict[tuple[str, str, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.server.route(f"/swap/v6.0/{CHAIN_ID}/swap", self._swap)

    async def _swap(self, request: web.Request) -> Any:
        q = request.query
        src, dst, amount = q["src"].lower(), q["dst"].lower(), int(q["amount"])
        dst_amount = self.dst_amounts[(src, dst, amount)]
        # 1inch's minReturn: the quoted output less the slippage percentage, rounded down
        slippage_bps = int(float(q["slippage"]) * 100)
        min_return = dst_amount * (10_000 - slippage_bps) // 10_000
        data = _selector("swapExactTokensForTokens(uint256,uint256,address[],address,uint256)")
        data += encode(
            ["uint256", "uint256", "address[]", "address", "uint256"],
            [amount, min_return, [q["src"], q["dst"]], q["from"], FAR_DEADLINE],
        )
        return {
            "dstAmount": str(dst_amount),
            "tx": {
                "from": q["from"],
                "to": self.router,
                "data": "0x" + data.hex(),
                "value": "0",
                "gas": 250_000,
                "gasPrice": "20000000000",
            },
        }


@dataclass
class Env:
    w3: AsyncWeb3
    devnet: Devnet
    journal: Journal
    sender: TransactionSender
    fake: OneInchSwapFake
    oneinch: OneInchClient

    @property
    def wallet(self) -> str:
        return self.sender.address

    def executor(self, *, with_1inch: bool = True) -> ChainExecutor:
        return ChainExecutor(
            self.sender,
            self.journal,
            DexContracts.from_addresses(self.devnet.addresses),
            ExecutionSettings(mode="fork", slippage_bps=SLIPPAGE_BPS, receipt_timeout_s=30),
            aggregator=self.oneinch if with_1inch else None,
        )


@pytest.fixture
async def env(w3: AsyncWeb3, devnet: Devnet, tmp_path: Path) -> AsyncIterator[Env]:
    _, key = devnet.accounts[5]
    fake = OneInchSwapFake(router=devnet.addresses["uniswap_v2.router"])
    async with (
        journal_at(tmp_path / "agent.db") as journal,
        fake.server,
        aiohttp.ClientSession() as session,
    ):
        oneinch = OneInchClient(
            session,
            API_KEY,
            CHAIN_ID,
            base_url=f"{fake.server.url}/swap/v6.0",
            policy=SourcePolicy(rate_per_s=100.0, burst=10, max_attempts=1),
        )
        yield Env(w3, devnet, journal, await make_sender(w3, key, journal), fake, oneinch)


def oneinch_intent(env: Env, amount_in: int, predicted_out: int) -> Intent:
    """DCA's 1inch buy of WETH with USDC, as the engine makes it (min = prediction - 0.5 %)."""
    usdc, weth = env.devnet.addresses["USDC"], env.devnet.addresses["WETH"]
    hop = RouteHop(pool="", dex="oneinch", kind="aggregator", token_in=usdc, token_out=weth)
    return Intent(
        id=f"dca-1-{uuid.uuid4().hex[:8]}",
        strategy="dca",
        kind="swap",
        route=(hop,),
        token_in=usdc,
        token_out=weth,
        amount_in=amount_in,
        min_amount_out=predicted_out * (10_000 - SLIPPAGE_BPS) // 10_000,
        predicted_amount_out=predicted_out,
        predicted_profit=0,
        predicted_profit_usd=0.0,
        deadline=FAR_DEADLINE,
    )


async def router_output(env: Env, amount_in: int) -> int:
    """What the devnet's "1inch router" pays for ``amount_in`` USDC now (getAmountsOut)."""
    a = env.devnet.addresses
    data = _selector("getAmountsOut(uint256,address[])") + encode(
        ["uint256", "address[]"], [amount_in, [a["USDC"], a["WETH"]]]
    )
    raw = await env.w3.eth.call({"to": a["uniswap_v2.router"], "data": data})
    (amounts,) = decode(["uint256[]"], raw)
    return int(amounts[-1])


async def test_1inch_route_is_built_by_1inch_approved_exactly_and_filled(env: Env) -> None:
    a = env.devnet.addresses
    amount_in = 2_500 * 10**6
    out = await router_output(env, amount_in)
    env.fake.dst_amounts[(a["USDC"].lower(), a["WETH"].lower(), amount_in)] = out
    weth_before = await erc20_balance(env.w3, a["WETH"], env.wallet)

    outcome = await env.executor().execute(oneinch_intent(env, amount_in, out))

    assert outcome.status == IntentStatus.FILLED, outcome.detail
    assert outcome.fill is not None
    assert (outcome.fill.amount_in, outcome.fill.amount_out) == (amount_in, out)
    assert await erc20_balance(env.w3, a["WETH"], env.wallet) == weth_before + out
    # the approval went to the router 1inch named, for exactly amount_in, and was used up
    assert await erc20_allowance(env.w3, a["USDC"], env.wallet, a["uniswap_v2.router"]) == 0
    approve_tx, swap_tx = await env.journal.txs_for_intent(outcome.intent_id)
    assert (approve_tx.purpose, swap_tx.purpose) == ("approve", "swap")
    assert swap_tx.to_address is not None
    assert swap_tx.to_address.lower() == a["uniswap_v2.router"].lower()
    (asked,) = env.fake.server.requests_to(f"/swap/v6.0/{CHAIN_ID}/swap")
    assert asked.query["from"].lower() == env.wallet.lower()
    assert asked.query["amount"] == str(amount_in)
    assert float(asked.query["slippage"]) == SLIPPAGE_BPS / 100
    assert asked.headers["Authorization"] == f"Bearer {API_KEY}"


async def test_1inch_offering_less_than_our_minimum_is_refused_before_anything_is_signed(
    env: Env,
) -> None:
    a = env.devnet.addresses
    amount_in = 2_500 * 10**6
    out = await router_output(env, amount_in)
    # the price moved since DCA's quote: 1inch now offers 1 % less than predicted
    env.fake.dst_amounts[(a["USDC"].lower(), a["WETH"].lower(), amount_in)] = out * 99 // 100
    nonce_before = await env.w3.eth.get_transaction_count(env.wallet)

    outcome = await env.executor().execute(oneinch_intent(env, amount_in, out))

    assert outcome.status == IntentStatus.FAILED
    assert outcome.detail is not None and "below our minimum" in outcome.detail
    assert await env.w3.eth.get_transaction_count(env.wallet) == nonce_before
    assert await erc20_allowance(env.w3, a["USDC"], env.wallet, a["uniswap_v2.router"]) == 0
    record = await env.journal.get_intent(outcome.intent_id)
    assert record.status == IntentStatus.FAILED


async def test_without_a_1inch_client_or_in_paper_mode_the_route_fails_with_a_clear_reason(
    env: Env,
) -> None:
    a = env.devnet.addresses
    amount_in = 1_000 * 10**6
    intent = oneinch_intent(env, amount_in, await router_output(env, amount_in))
    nonce_before = await env.w3.eth.get_transaction_count(env.wallet)

    no_client = await env.executor(with_1inch=False).execute(intent)
    assert (no_client.status, no_client.detail) == (IntentStatus.FAILED, NO_AGGREGATOR)

    await env.journal.seed_paper_balances({a["USDC"]: 10_000 * 10**6})
    paper = PaperExecutor(env.w3, env.journal, DexContracts.from_addresses(a), SLIPPAGE_BPS)
    on_paper = await paper.execute(oneinch_intent(env, amount_in, intent.predicted_amount_out))
    assert on_paper.status == IntentStatus.FAILED
    assert on_paper.detail == "paper mode cannot verify an aggregator route on chain"
    assert await env.journal.paper_balances() == {a["USDC"]: 10_000 * 10**6}

    assert await env.w3.eth.get_transaction_count(env.wallet) == nonce_before
    assert env.fake.server.requests == []  # nobody asked 1inch for a swap it cannot use


async def test_1inch_unavailable_or_answering_nonsense_fails_the_intent_not_the_agent(
    env: Env,
) -> None:
    a = env.devnet.addresses
    amount_in = 1_000 * 10**6
    out = await router_output(env, amount_in)
    env.fake.dst_amounts[(a["USDC"].lower(), a["WETH"].lower(), amount_in)] = out
    nonce_before = await env.w3.eth.get_transaction_count(env.wallet)

    env.fake.server.fail("503", path=f"/swap/v6.0/{CHAIN_ID}/swap")
    down = await env.executor().execute(oneinch_intent(env, amount_in, out))
    assert down.status == IntentStatus.FAILED and down.detail

    env.fake.router = "0xnot-an-address"
    nonsense = await env.executor().execute(oneinch_intent(env, amount_in, out))
    assert nonsense.status == IntentStatus.FAILED
    assert nonsense.detail is not None and "unusable swap transaction" in nonsense.detail

    assert await env.w3.eth.get_transaction_count(env.wallet) == nonce_before
    assert API_KEY not in (down.detail or "") + (nonsense.detail or "")
