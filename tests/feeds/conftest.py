"""Fixtures for feed tests: one aiohttp session per test, fast retry policies, fake servers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from agent.feeds.http import SourcePolicy
from tests.fakes.http_fakes import CoinGeckoFake, OneInchFake, XFake

# Short backoffs so tests don't idle; Retry-After values set by tests are still honoured in full.
FAST_POLICY = SourcePolicy(
    rate_per_s=1000.0,
    burst=100,
    timeout_s=0.3,
    max_attempts=3,
    backoff_initial_s=0.01,
    backoff_max_s=0.05,
    backoff_jitter_s=0.01,
    max_retry_after_s=5.0,
    breaker_failures=100,
    breaker_cooldown_s=0.2,
    max_age_s=60.0,
)


@pytest.fixture
def fast_policy() -> SourcePolicy:
    return FAST_POLICY


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http_session:
        yield http_session


@pytest.fixture
async def oneinch_fake() -> AsyncIterator[OneInchFake]:
    fake = OneInchFake()
    async with fake.server:
        yield fake


@pytest.fixture
async def coingecko_fake() -> AsyncIterator[CoinGeckoFake]:
    fake = CoinGeckoFake()
    async with fake.server:
        yield fake


@pytest.fixture
async def x_fake() -> AsyncIterator[XFake]:
    fake = XFake()
    async with fake.server:
        yield fake
