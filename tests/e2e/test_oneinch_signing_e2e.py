"""The running agent (fork mode, DCA through 1inch) against a compromised 1inch API.

The 1inch API is a local fake serving the documented ``/quote`` and ``/swap`` shapes; the router
its transactions call is the devnet's AggregationRouterV6 stand-in, listed in the deployment
file as the chain's 1inch router. First the fake answers ``/swap`` with ``to`` = USDC and
``transfer(attacker, whole balance)``: the agent signs nothing, the wallet keeps every unit,
the journal says why and the operator's Telegram hears of it. Then the fake answers honestly
and the same DCA buy goes through.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from eth_abi import decode, encode
from eth_utils.crypto import keccak

from agent.app.rehearsal import _send_as
from agent.store.models import IntentStatus
from tests.chain.test_aggregator_execution import (
    ATTACKER,
    CHAIN_ID,
    OneInchSwapFake,
    transfer_whole_balance,
)
from tests.conftest import ROOT
from tests.e2e.harness import (
    AGENT_ACCOUNT,
    GAPPER,
    OPERATOR_CHAT_ID,
    TELEGRAM_TOKEN,
    AgentRun,
    Chain,
    running_agent,
    write_config,
)
from tests.fakes.telegram_fake import TelegramFake

ONEINCH_KEY = "e2e-1inch-key"
DCA_USDC = 1  # whole USDC per slot: the size the 1inch feed quotes (one unit of USDC/WETH)


async def deploy_oneinch_router(chain: Chain) -> str:
    artifact = json.loads((ROOT / "abis" / "DevnetAggregationRouterV6.json").read_text())
    receipt = await _send_as(chain.rpc, GAPPER, {"data": artifact["bytecode"]})
    return str(receipt["contractAddress"])


async def v2_output(chain: Chain, amount_in: int) -> int:
    """What the stand-in (through Uniswap V2) pays for ``amount_in`` USDC now."""
    a = chain.deployment.addresses
    data = keccak(text="getAmountsOut(uint256,address[])")[:4] + encode(
        ["uint256", "address[]"], [amount_in, [a["USDC"], a["WETH"]]]
    )
    call = {"to": a["uniswap_v2.router"], "data": "0x" + data.hex()}
    raw = await chain.rpc.call("eth_call", [call, "latest"])
    (amounts,) = decode(["uint256[]"], bytes.fromhex(raw[2:]))
    return int(amounts[-1])


async def run_until(
    agent: AgentRun, chain: Chain, done: Callable[[], Awaitable[bool]], rounds: int = 60
) -> None:
    """Mine a block and tick until ``done()`` (an async predicate) holds."""
    for _ in range(rounds):
        await chain.rpc.call("evm_mine")
        await agent.tick()
        if await done():
            return
        await asyncio.sleep(0.2)  # the DCA slot (1 s) and the 1inch poll come round
    raise AssertionError("the agent never got there")


async def test_a_compromised_1inch_answer_is_refused_and_alerted_then_the_honest_one_trades(
    chain: Chain, workdir: Path, telegram: TelegramFake
) -> None:
    a = chain.deployment.addresses
    router = await deploy_oneinch_router(chain)
    deployment = json.loads(chain.deployment_file.read_text())
    deployment["addresses"]["oneinch.router"] = router  # the chain's 1inch router
    deployment_file = workdir / "devnet.json"
    deployment_file.write_text(json.dumps(deployment))

    amount_in = DCA_USDC * 10**6
    out = await v2_output(chain, amount_in)
    fake = OneInchSwapFake(router=router, executor=a["uniswap_v2.router"])
    fake.dst_amounts[(a["USDC"].lower(), a["WETH"].lower(), amount_in)] = out

    async def quote(request: web.Request) -> web.Response:
        return web.json_response({"dstAmount": str(out)})

    fake.server.route(f"/swap/v6.0/{CHAIN_ID}/quote", quote)
    usdc_before = await chain.balance("USDC", AGENT_ACCOUNT)
    weth_before = await chain.balance("WETH", AGENT_ACCOUNT)
    fake.tamper = transfer_whole_balance(usdc_before)

    async with fake.server:
        tree = chain.tree(
            workdir,
            telegram_url=telegram.base_url,
            risk={"max_token_exposure_usd": 1e9, "max_total_exposure_usd": 1e9},
            strategies={
                "arbitrage": {"enabled": False},
                "dca": {
                    "enabled": True,
                    "buy_token": "WETH",
                    "spend_token": "USDC",
                    "amount": str(DCA_USDC),
                    "interval_s": 1.0,
                    "route": "oneinch",
                },
            },
        )
        tree["chain"]["deployment_file"] = str(deployment_file)
        tree["feeds"] = {
            "simulated": False,
            "oneinch": {
                "enabled": True,
                "api_key": "${ONEINCH_API_KEY}",
                "base_url": f"{fake.server.url}/swap/v6.0",
                "pairs": ["USDC/WETH"],
                "poll_interval_s": 0.2,
                "requests_per_s": 50.0,
            },
        }
        environ = {"TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN, "ONEINCH_API_KEY": ONEINCH_KEY}
        cfg = write_config(workdir / "agent.toml", tree, environ)
        nonce_before = int(
            await chain.rpc.call("eth_getTransactionCount", [AGENT_ACCOUNT, "latest"]), 16
        )

        async with running_agent(cfg) as agent:
            journal = agent.parts.journal

            async def refused() -> bool:
                return any(i.status == IntentStatus.FAILED for i in await journal.list_intents())

            await run_until(agent, chain, refused)
            (failed,) = await journal.list_intents()
            assert failed.status_detail is not None
            assert "not the chain's 1inch router" in failed.status_detail
            assert await journal.txs_for_intent(failed.intent.id) == []
            assert await journal.count_rejections("signing_refused") == 1
            nonce_after_refusal = int(
                await chain.rpc.call("eth_getTransactionCount", [AGENT_ACCOUNT, "latest"]), 16
            )
            assert nonce_after_refusal == nonce_before  # nothing signed, nothing broadcast
            assert await chain.balance("USDC", AGENT_ACCOUNT) == usdc_before
            assert await chain.balance("USDC", ATTACKER) == 0

            def refusal_alerts() -> list[str]:
                return [
                    m.visible_text
                    for m in telegram.messages_to(OPERATOR_CHAT_ID)
                    if "Refused to sign" in m.visible_text
                ]

            async with asyncio.timeout(20):
                while not refusal_alerts():
                    await asyncio.sleep(0.05)
            assert "not the chain's 1inch router" in refusal_alerts()[0]

            # 1inch answers honestly again: the next slot buys
            fake.tamper = None

            async def filled() -> bool:
                return any(i.status == IntentStatus.FILLED for i in await journal.list_intents())

            await run_until(agent, chain, filled)

        assert await chain.balance("WETH", AGENT_ACCOUNT) == weth_before + out
        assert await chain.balance("USDC", AGENT_ACCOUNT) == usdc_before - amount_in
