"""The RPC dies under a running paper agent: /health turns degraded with a growing
``last_tick_age_s``, and Telegram and Discord each get exactly one feed-down alert, however
many polls fail; when the RPC comes back, health is ok again and exactly one recovery alert
arrives. Nothing here measures time: every wait is a bounded poll."""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console

from agent.app.build import open_agent
from agent.events import HEAD_SOURCE
from tests.e2e.harness import OPERATOR_CHAT_ID, TELEGRAM_TOKEN, Chain, wait_for, write_config
from tests.fakes.discord_fake import DiscordWebhookFake
from tests.fakes.rpc_proxy import FaultyRpcProxy
from tests.fakes.telegram_fake import TelegramFake


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def mining(chain: Chain, every_s: float) -> AsyncIterator[None]:
    """The devnet mines on demand: give it a steady block time, as a real chain has."""

    async def mine() -> None:
        while True:
            await chain.devnet.mine(1)
            await asyncio.sleep(every_s)

    task = asyncio.create_task(mine())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_dead_rpc_degrades_health_and_alerts_once_per_transition(
    chain: Chain, workdir: Path, telegram: TelegramFake, discord: DiscordWebhookFake
) -> None:
    port = free_port()
    async with (
        FaultyRpcProxy(chain.devnet.rpc_url, failure_rate=0.0) as proxy,
        aiohttp.ClientSession() as http,
        mining(chain, every_s=0.25),
    ):
        tree = chain.tree(workdir, telegram_url=telegram.base_url, discord_url=discord.webhook_url)
        tree["chain"].update(
            {"rpc_urls": [proxy.url], "block_time_s": 0.5, "request_timeout_s": 2.0}
        )
        tree["execution"]["mode"] = "paper"
        tree["feeds"] = {}
        tree["metrics"] = {"enabled": True, "port": port}
        environ = {"TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN, "DISCORD_WEBHOOK_URL": discord.webhook_url}
        cfg = write_config(workdir / "agent.toml", tree, environ)
        health_url = f"http://127.0.0.1:{port}/health"
        latest: dict[str, Any] = {}

        async def health() -> dict[str, Any]:
            async with http.get(health_url) as response:
                latest.clear()
                latest.update(await response.json())
                return latest

        async def wait_health(predicate: Any, timeout_s: float = 60.0) -> dict[str, Any]:
            async with asyncio.timeout(timeout_s):
                while not predicate(await health()):
                    await asyncio.sleep(0.1)
            return dict(latest)

        def telegram_titles(prefix: str) -> list[str]:
            # the card's first line is "<severity icon> <title>"
            return [
                m.visible_text
                for m in telegram.messages_to(OPERATOR_CHAT_ID)
                if prefix in m.visible_text.splitlines()[0]
            ]

        def discord_titles(prefix: str) -> list[str]:
            return [
                body["embeds"][0]["title"]
                for body in discord.delivered
                if body.get("embeds") and str(body["embeds"][0]["title"]).startswith(prefix)
            ]

        down_title = f"Feed down: {HEAD_SOURCE}"
        up_title = f"Feed recovered: {HEAD_SOURCE}"

        async with open_agent(cfg, mode="paper", console=Console(file=io.StringIO())) as parts:
            stop = asyncio.Event()
            engine = asyncio.create_task(parts.engine.run(parts.blocks(), stop=stop))
            try:
                ok = await wait_health(
                    lambda h: h["status"] == "ok" and h["last_block"] is not None
                )
                assert ok["last_tick_age_s"] is not None and ok["last_head"] is not None

                proxy.cut()
                degraded = await wait_health(lambda h: h["status"] == "degraded")
                assert HEAD_SOURCE in degraded["stale_feeds"]
                assert degraded["last_tick_age_s"] is not None
                later = await wait_health(
                    lambda h: h["last_tick_age_s"] > degraded["last_tick_age_s"] + 1.0
                )
                assert later["status"] == "degraded"

                await wait_for(
                    lambda: bool(telegram_titles(down_title)) and bool(discord_titles(down_title)),
                    timeout_s=60,
                )
                # Many more polls fail while the RPC stays dead: still one alert per channel.
                failed_so_far = proxy.dropped_while_down
                await wait_for(lambda: proxy.dropped_while_down > failed_so_far + 20, 60)
                assert len(telegram_titles(down_title)) == 1
                assert len(discord_titles(down_title)) == 1

                proxy.restore()
                await wait_health(lambda h: h["status"] == "ok")
                await wait_for(
                    lambda: bool(telegram_titles(up_title)) and bool(discord_titles(up_title)),
                    timeout_s=60,
                )
                ticked = (await health())["last_block"]
                await wait_health(lambda h: h["last_block"] > ticked)  # trading on
                assert len(telegram_titles(up_title)) == 1
                assert len(discord_titles(up_title)) == 1
                assert len(telegram_titles(down_title)) == 1
                assert len(discord_titles(down_title)) == 1
                assert not engine.done()
                # the alert deliveries and the head are on the metrics page too
                async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                    page = await response.text()
                for channel in ("telegram", "discord"):
                    sent = f'defi_agent_alerts_total{{channel="{channel}",outcome="sent"}} '
                    assert any(
                        line.startswith(sent) and float(line.split()[-1]) >= 2
                        for line in page.splitlines()
                    ), page
                assert "defi_agent_head_stalled 0.0" in page
            finally:
                stop.set()
                async with asyncio.timeout(30):
                    await engine
