"""Signal webhooks on the devnet, through the real console (uvicorn, aiohttp client), the real
engine, risk gate and SQLite journal: a signed signal trades at the next block and moves the
wallet's balances on chain by its fill; a bad signature, a replay (also after a restart), a
stale timestamp and a burst over the rate limit are refused, journaled and trade nothing; a
signal the risk gate refuses is journaled with its reason.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from agent.config.models import AgentConfig
from agent.console.webhook_auth import SIGNATURE_HEADER, sign_body, tradingview_passphrase
from agent.engine.loop import TickReport
from agent.store.models import IntentStatus
from tests.e2e.harness import AGENT_ACCOUNT, AgentRun, Chain, running_agent, write_config

BOT_SECRET = "bot-secret-0123456789abcdef"
TV_SECRET = "tv-secret-fedcba9876543210"
MAX_TRADE_USD = 2_000.0


def webhook_config(chain: Chain, workdir: Path) -> AgentConfig:
    tree = chain.tree(
        workdir,
        # the funded wallet holds millions: the trade-size cap is the limit that matters here
        risk={
            "max_trade_usd": MAX_TRADE_USD,
            "max_token_exposure_usd": 1e9,
            "max_total_exposure_usd": 1e9,
        },
        strategies={"arbitrage": {"enabled": False}, "signal": {"enabled": True}},
    )
    tree["console"] = {"enabled": True, "port": 0}
    tree["webhooks"] = {
        "bot": {
            "secret": "${WEBHOOK_BOT_SECRET}",
            "format": "json",
            "tokens": ["WETH"],
            "max_notional_usd": 5_000.0,
            # wide enough that a slow machine's run stays inside it: replays are refused by
            # their nonce, not by their age
            "max_age_s": 600.0,
        },
        "tv": {
            "secret": "${WEBHOOK_TV_SECRET}",
            "format": "tradingview",
            "actions": ["sell"],
            "tokens": ["WETH"],
            "max_notional_usd": 5_000.0,
            "max_per_minute": 3,
        },
    }
    # The secrets come from .env beside agent.toml, as an operator's do.
    (workdir / ".env").write_text(
        f"WEBHOOK_BOT_SECRET={BOT_SECRET}\nWEBHOOK_TV_SECRET={TV_SECRET}\n"
    )
    return write_config(workdir / "agent.toml", tree, {})


def signal_body(nonce: str, **fields: Any) -> bytes:
    return json.dumps({"token": "WETH", "nonce": nonce, **fields}).encode()


async def post(
    http: aiohttp.ClientSession, agent: AgentRun, name: str, body: bytes, signature: str | None
) -> tuple[int, dict[str, Any]]:
    console = agent.parts.console
    assert console is not None
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers[SIGNATURE_HEADER] = signature
    async with http.post(f"{console.url}webhooks/{name}", data=body, headers=headers) as response:
        return response.status, await response.json()


async def next_block(chain: Chain, agent: AgentRun) -> TickReport:
    """Mine a block and let the agent tick on it (a signal is decided at the next block)."""
    await chain.rpc.call("evm_mine")
    return await agent.tick()


async def wallet(chain: Chain) -> tuple[int, int]:
    return await chain.balance("WETH", AGENT_ACCOUNT), await chain.balance("USDC", AGENT_ACCOUNT)


async def test_signed_signals_trade_on_chain_and_forged_replayed_stale_or_bursts_do_not(
    chain: Chain, workdir: Path
) -> None:
    cfg = webhook_config(chain, workdir)
    now = int(time.time())
    buy = signal_body("bot-buy-0001", action="buy", amount_usd=1_500)
    good_signature = sign_body(BOT_SECRET, now, buy)

    async with running_agent(cfg) as agent, aiohttp.ClientSession() as http:
        journal = agent.parts.journal
        weth_start, usdc_start = await wallet(chain)

        # A forged signature: 401, journaled, and nothing trades at the next block.
        forged = sign_body("not-the-secret-at-all", now, buy)
        status, answer = await post(http, agent, "bot", buy, forged)
        assert (status, answer["detail"]) == (401, "bad signature")
        status, _ = await post(http, agent, "bot", buy, None)
        assert status == 401
        await next_block(chain, agent)
        assert agent.parts.engine.report.fills == []
        assert await journal.list_intents() == []
        assert await wallet(chain) == (weth_start, usdc_start)
        refusals = await journal.list_control_actions(source="webhook")
        assert [(a.actor, a.action, a.accepted, a.detail) for a in refusals] == [
            ("bot@127.0.0.1", "signal", False, "bad signature"),
            ("bot@127.0.0.1", "signal", False, f"missing {SIGNATURE_HEADER} header"),
        ]

        # The signed buy: queued, then bought at the next block through the risk gate.
        status, answer = await post(http, agent, "bot", buy, good_signature)
        assert status == 202 and answer["queued"] is True
        report = await next_block(chain, agent)
        assert report.started == 1
        (fill,) = agent.parts.engine.report.fills
        assert fill.intent_id.startswith("signal-")
        usdc = chain.deployment.tokens["USDC"]
        assert fill.amount_in == 1_500 * 10**usdc.decimals  # exactly the USD asked, in USDC
        assert await wallet(chain) == (weth_start + fill.amount_out, usdc_start - fill.amount_in)
        (intent,) = await journal.list_intents()
        assert intent.status == IntentStatus.FILLED

        # The same request again (a replay, still inside its window): refused, nothing trades.
        status, answer = await post(http, agent, "bot", buy, good_signature)
        assert (status, answer["detail"]) == (409, "nonce already used (a replayed request)")
        # A fresh nonce signed two minutes ago is stale for the TradingView webhook's 60 s...
        tv_passphrase = tradingview_passphrase(TV_SECRET, "tv")
        stale = signal_body(
            "tv-sell-0001",
            action="sell",
            amount="0.2",
            passphrase=tv_passphrase,
            timestamp=now - 120,
        )
        status, answer = await post(http, agent, "tv", stale, None)
        assert status == 401 and answer["detail"].startswith("timestamp is")
        await next_block(chain, agent)
        assert len(agent.parts.engine.report.fills) == 1

        # A TradingView alert: the passphrase in the body, {{timenow}} as ISO 8601.
        iso_now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        weth_before, usdc_before = await wallet(chain)
        alert = signal_body(
            "tv-sell-0002",
            action="sell",
            amount="0.2",
            passphrase=tv_passphrase,
            timestamp=iso_now,
            ticker="ETHUSD",
        )
        status, _ = await post(http, agent, "tv", alert, None)
        assert status == 202
        await next_block(chain, agent)
        sell = agent.parts.engine.report.fills[-1]
        assert sell.amount_in == 2 * 10**17  # exactly 0.2 WETH sold
        assert await wallet(chain) == (weth_before - sell.amount_in, usdc_before + sell.amount_out)

        # The tv webhook takes 3 requests a minute (the stale one and the alert counted): the
        # fourth is refused before its signature is even read.
        buy_on_tv = signal_body(
            "tv-buy-0003", action="buy", amount="0.1", passphrase=tv_passphrase, timestamp=iso_now
        )
        status, answer = await post(http, agent, "tv", buy_on_tv, None)
        assert (status, answer["detail"]) == (403, "action 'buy' is not allowed here")
        burst = signal_body(
            "tv-sell-0004", action="sell", amount="0.1", passphrase=tv_passphrase, timestamp=iso_now
        )
        status, answer = await post(http, agent, "tv", burst, None)
        assert (status, answer["detail"]) == (429, "rate limit exceeded")

        # A signal within the webhook's cap but over risk.max_trade_usd: the risk gate refuses
        # it and journals why; the wallet does not move.
        weth_before, usdc_before = await wallet(chain)
        big = signal_body("bot-buy-0002", action="buy", amount_usd=3_000)
        status, _ = await post(
            http, agent, "bot", big, sign_body(BOT_SECRET, int(time.time()), big)
        )
        assert status == 202
        await next_block(chain, agent)
        assert await journal.count_rejections("exposure_trade") == 1
        assert len(agent.parts.engine.report.fills) == 2
        assert await wallet(chain) == (weth_before, usdc_before)

        # An oversized body is refused before it is read to the end.
        huge = signal_body("bot-buy-0003", action="buy", amount_usd=10, padding="x" * 10_000)
        status, _ = await post(http, agent, "bot", huge, sign_body(BOT_SECRET, now, huge))
        assert status == 413

        # Nothing journaled holds a secret or the passphrase.
        journaled = await journal.list_control_actions(source="webhook")
        texts = " ".join(f"{a.actor} {a.argument} {a.detail}" for a in journaled)
        for secret in (BOT_SECRET, TV_SECRET, tv_passphrase):
            assert secret not in texts
        assert [a.accepted for a in journaled].count(True) == 3

    # Restarted on the same journal, the agent still knows the nonce: the replay is refused.
    async with running_agent(cfg) as agent, aiohttp.ClientSession() as http:
        status, _ = await post(http, agent, "bot", buy, good_signature)
        assert status == 409
        await next_block(chain, agent)
        assert agent.parts.engine.report.fills == []
