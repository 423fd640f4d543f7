"""DCA's 1inch route executed honestly: through the 1inch client's ``/swap`` (a local fake of the
documented API whose router is the devnet's AggregationRouterV6 stand-in, answering with real v6
``swap`` calldata), with an exact approval to the router 1inch names, our minimum output
enforced, simulation before signing; refused with a clear reason wherever no 1inch swap can be
built (no client, paper mode); and refused by the signing policy, with nothing signed, when
1inch's answer is not the swap we asked for."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector
from web3 import AsyncWeb3

from agent.alerts.base import AlertEvent, SigningRefusedAlert
from agent.alerts.subscriber import AlertSubscriber
from agent.chain.tx import TransactionSender
from agent.devnet import Devnet
from agent.events import EventBus, SigningRefusal
from agent.execution import (
    NO_AGGREGATOR,
    ChainExecutor,
    DexContracts,
    ExecutionSettings,
    PaperExecutor,
    erc20_allowance,
    erc20_balance,
)
from agent.execution.policy import SIGNING_REFUSED, SigningPolicy
from agent.feeds.http import SourcePolicy
from agent.feeds.oneinch import OneInchClient
from agent.store import IntentStatus, Journal
from agent.types import Intent, RouteHop
from tests.chain._execution_helpers import journal_at, make_sender
from tests.conftest import ROOT
from tests.fakes.http_fakes import FakeServer

pytestmark = pytest.mark.chain

CHAIN_ID = 31337
FAR_DEADLINE = 2**40
API_KEY = "test-1inch-key-not-a-secret-elsewhere"
SLIPPAGE_BPS = 50


def _selector(signature: str) -> bytes:
    return function_signature_to_4byte_selector(signature)


SWAP_DESCRIPTION = "(address,address,address,address,uint256,uint256,uint256)"
V6_SWAP = _selector(f"swap(address,{SWAP_DESCRIPTION},bytes)")
ATTACKER = "0x000000000000000000000000000000000000dEaD"

# What the fake answers, given the honest v6 transaction's fields: (to, calldata).
Tamper = Callable[["HonestSwap"], tuple[str, bytes]]


@dataclass(frozen=True)
class HonestSwap:
    """The fields of the transaction an honest 1inch would return for one ``/swap`` request."""

    router: str
    executor: str
    src: str
    dst: str
    amount: int
    min_return: int
    receiver: str

    def calldata(
        self,
        *,
        receiver: str | None = None,
        min_return: int | None = None,
        selector: bytes = V6_SWAP,
    ) -> bytes:
        desc = (
            self.src,
            self.dst,
            self.executor,
            receiver or self.receiver,
            self.amount,
            self.min_return if min_return is None else min_return,
            0,
        )
        return selector + encode(["address", SWAP_DESCRIPTION, "bytes"], [self.executor, desc, b""])


@dataclass
class OneInchSwapFake:
    """``/swap`` of the 1inch API v6.0 answering with a transaction to ``router``.

    On the devnet the "1inch router" is ``DevnetAggregationRouterV6`` (the real router's ``swap``
    ABI, executing through Uniswap's Router02 as its ``executor``): the transaction is a real v6
    ``swap(executor, desc, data)`` paying ``from`` at least 1inch's minimum return (``dstAmount``
    less ``slippage`` percent). ``dst_amounts`` are set by the test; ``tamper`` rewrites the
    answer as a compromised API would; requests are recorded.
    """

    router: str
    executor: str
    server: FakeServer = field(default_factory=lambda: FakeServer("1inch"))
    dst_amounts: dict[tuple[str, str, int], int] = field(default_factory=dict)
    tamper: Tamper | None = None

    def __post_init__(self) -> None:
        self.server.route(f"/swap/v6.0/{CHAIN_ID}/swap", self._swap)

    async def _swap(self, request: web.Request) -> Any:
        q = request.query
        src, dst, amount = q["src"].lower(), q["dst"].lower(), int(q["amount"])
        dst_amount = self.dst_amounts[(src, dst, amount)]
        # 1inch's minReturn: the quoted output less the slippage percentage, rounded down
        slippage_bps = int(float(q["slippage"]) * 100)
        min_return = dst_amount * (10_000 - slippage_bps) // 10_000
        honest = HonestSwap(
            self.router, self.executor, q["src"], q["dst"], amount, min_return, q["from"]
        )
        to, data = (
            (honest.router, honest.calldata()) if self.tamper is None else self.tamper(honest)
        )
        return {
            "dstAmount": str(dst_amount),
            "tx": {
                "from": q["from"],
                "to": to,
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
    alerts: AlertOutbox
    refusals: list[SigningRefusal]

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


async def deploy_oneinch_router(w3: AsyncWeb3, deployer: str) -> str:
    """The devnet's AggregationRouterV6 stand-in (contracts/DevnetAggregationRouterV6.sol)."""
    artifact = json.loads((ROOT / "abis" / "DevnetAggregationRouterV6.json").read_text())
    tx_hash = await w3.eth.send_transaction({"from": deployer, "data": artifact["bytecode"]})
    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash)
    assert receipt["status"] == 1
    return str(receipt["contractAddress"])


@dataclass
class AlertOutbox:
    """Where the agent's alert subscriber posts cards (``AlertFanout.post`` in the agent)."""

    cards: list[AlertEvent] = field(default_factory=list)

    def post(self, event: AlertEvent) -> bool:
        self.cards.append(event)
        return True


@pytest.fixture
async def env(w3: AsyncWeb3, devnet: Devnet, tmp_path: Path) -> AsyncIterator[Env]:
    a = devnet.addresses
    _, key = devnet.accounts[5]
    router = await deploy_oneinch_router(w3, devnet.accounts[0][0])
    fake = OneInchSwapFake(router=router, executor=a["uniswap_v2.router"])
    events = EventBus()
    alerts = AlertOutbox()
    AlertSubscriber(alerts, {}).subscribe(events)
    refusals: list[SigningRefusal] = []
    events.subscribe(refusals.append, SigningRefusal)
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
        sender = await make_sender(w3, key, journal)
        sender.guard = SigningPolicy(
            w3,
            sender.address,
            DexContracts.from_addresses(a),
            oneinch_router=router,
            watched_tokens=[a["USDC"], a["WETH"], a["DAI"]],
            journal=journal,
            events=events,
        )
        yield Env(w3, devnet, journal, sender, fake, oneinch, alerts, refusals)


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
    assert await erc20_allowance(env.w3, a["USDC"], env.wallet, env.fake.router) == 0
    approve_tx, swap_tx = await env.journal.txs_for_intent(outcome.intent_id)
    assert (approve_tx.purpose, swap_tx.purpose) == ("approve", "swap")
    assert swap_tx.to_address is not None
    assert swap_tx.to_address.lower() == env.fake.router.lower()
    assert env.refusals == [] and env.alerts.cards == []
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
    assert await erc20_allowance(env.w3, a["USDC"], env.wallet, env.fake.router) == 0
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


def transfer_whole_balance(balance: int) -> Tamper:
    """(a) ``to`` = the token we sell, ``data`` = ``transfer(attacker, our whole balance)``."""

    def tamper(honest: HonestSwap) -> tuple[str, bytes]:
        transfer = _selector("transfer(address,uint256)")
        return honest.src, transfer + encode(["address", "uint256"], [ATTACKER, balance])

    return tamper


def _other_receiver(honest: HonestSwap) -> tuple[str, bytes]:
    """(b) the real router, but the output paid to someone else."""
    return honest.router, honest.calldata(receiver=ATTACKER)


def _minimum_return_of_one(honest: HonestSwap) -> tuple[str, bytes]:
    """(c) the real router with ``minReturn = 1``: a sandwich could take everything."""
    return honest.router, honest.calldata(min_return=1)


def _unknown_selector(honest: HonestSwap) -> tuple[str, bytes]:
    """(d) the real router, a function the agent never uses."""
    return honest.router, honest.calldata(selector=bytes.fromhex("deadbeef"))


@pytest.mark.parametrize(
    ("case", "rule", "words"),
    [
        ("token_transfer", "target", "not the chain's 1inch router"),
        ("other_receiver", "calldata", "not our wallet"),
        ("minimum_below_floor", "calldata", "below our floor"),
        ("unknown_selector", "calldata", "unknown 1inch router function 0xdeadbeef"),
    ],
)
async def test_a_1inch_answer_that_is_not_our_swap_is_never_signed(
    env: Env, case: str, rule: str, words: str
) -> None:
    a = env.devnet.addresses
    amount_in = 2_500 * 10**6
    out = await router_output(env, amount_in)
    env.fake.dst_amounts[(a["USDC"].lower(), a["WETH"].lower(), amount_in)] = out
    usdc_before = await erc20_balance(env.w3, a["USDC"], env.wallet)
    weth_before = await erc20_balance(env.w3, a["WETH"], env.wallet)
    attacker_before = await erc20_balance(env.w3, a["USDC"], ATTACKER)
    nonce_before = await env.w3.eth.get_transaction_count(env.wallet)
    env.fake.tamper = {
        "token_transfer": transfer_whole_balance(usdc_before),
        "other_receiver": _other_receiver,
        "minimum_below_floor": _minimum_return_of_one,
        "unknown_selector": _unknown_selector,
    }[case]

    outcome = await env.executor().execute(oneinch_intent(env, amount_in, out))

    # nothing signed, nothing broadcast, no allowance granted, balances unchanged on chain
    assert outcome.status == IntentStatus.FAILED
    assert await env.w3.eth.get_transaction_count(env.wallet) == nonce_before
    assert await env.journal.txs_for_intent(outcome.intent_id) == []
    assert await erc20_balance(env.w3, a["USDC"], env.wallet) == usdc_before
    assert await erc20_balance(env.w3, a["WETH"], env.wallet) == weth_before
    assert await erc20_balance(env.w3, a["USDC"], ATTACKER) == attacker_before
    for spender in (env.fake.router, a["USDC"]):
        assert await erc20_allowance(env.w3, a["USDC"], env.wallet, spender) == 0
    # the refusal is journaled with its reason and alerted
    record = await env.journal.get_intent(outcome.intent_id)
    assert record.status == IntentStatus.FAILED
    assert record.status_detail is not None and words in record.status_detail
    assert await env.journal.count_rejections(SIGNING_REFUSED) == 1
    (refusal,) = env.refusals
    assert (refusal.purpose, refusal.trade_id, refusal.strategy) == (
        "swap",
        outcome.intent_id,
        "dca",
    )
    (alert,) = env.alerts.cards
    assert isinstance(alert, SigningRefusedAlert)
    assert (alert.rule, alert.trade_id) == (rule, outcome.intent_id)
    assert words in alert.reason

    # the honest answer still trades
    env.fake.tamper = None
    honest = await env.executor().execute(oneinch_intent(env, amount_in, out))
    assert honest.status == IntentStatus.FILLED, honest.detail
    assert await erc20_balance(env.w3, a["WETH"], env.wallet) == weth_before + out
    assert await erc20_balance(env.w3, a["USDC"], env.wallet) == usdc_before - amount_in
