"""E2E fixtures: the session devnet with the agent's wallet funded (once per module), reverted
after every test; local Telegram and Discord fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.devnet import Devnet
from tests.e2e.harness import TELEGRAM_TOKEN, Chain, Process, funded_chain
from tests.fakes.discord_fake import DiscordWebhookFake
from tests.fakes.telegram_fake import TelegramFake


@pytest.fixture(scope="module")
async def funded(devnet: Devnet) -> AsyncIterator[Chain]:
    before_funding = await devnet.snapshot()
    try:
        yield await funded_chain(devnet)
    finally:
        await devnet.revert(before_funding)


@pytest.fixture
async def chain(funded: Chain) -> AsyncIterator[Chain]:
    snapshot_id = await funded.devnet.snapshot()
    try:
        yield funded
    finally:
        await funded.devnet.revert(snapshot_id)


@pytest.fixture
async def telegram() -> AsyncIterator[TelegramFake]:
    async with TelegramFake(TELEGRAM_TOKEN) as fake:
        yield fake
        # Wake a getUpdates long poll the agent left behind, or the server waits it out (25 s).
        fake._new_update.set()


@pytest.fixture
async def discord() -> AsyncIterator[DiscordWebhookFake]:
    async with DiscordWebhookFake() as fake:
        yield fake


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
async def agent_processes() -> AsyncIterator[list[Process]]:
    """Whatever `defi-agent run` processes a test starts are gone when it ends."""
    started: list[Process] = []
    yield started
    for proc in started:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
