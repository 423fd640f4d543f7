"""The first load in the background, behind a provider that answers HTTP 429 beyond a rate:
pools become usable batch by batch, the rest are reported loading (not stale), refreshes never
load them, and a pool whose load fails is retried later with a growing backoff."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from agent.chain.rpc import RpcClient
from agent.devnet import Devnet
from agent.dex.pools import PoolRegistry, fetch_v2_pool, fetch_v3_pool, progress_bar
from agent.dex.v3 import V3Pool
from tests.chain.test_pool_events import head
from tests.chain.test_pools import new_registry
from tests.fakes.rpc_proxy import EnforcedLimits, FaultyRpcProxy

pytestmark = pytest.mark.chain

WINDOW_PCT = 10.0


def background_registry(client: RpcClient, devnet: Devnet) -> PoolRegistry:
    return new_registry(
        client, devnet, event_driven=True, tick_window_pct=WINDOW_PCT, background_load=True
    )


async def test_pools_load_in_batches_under_a_rate_limit_and_are_usable_at_once(
    w3: Any, devnet: Devnet, caplog: pytest.LogCaptureFixture
) -> None:
    limits = EnforcedLimits(requests_per_s=8)
    async with (
        FaultyRpcProxy(devnet.rpc_url, failure_rate=0.0, limits=limits) as proxy,
        # no pacing configured: the client learns the rate from the 429s and backs off
        RpcClient([proxy.url], backoff_initial_s=0.2, backoff_max_s=1.0) as client,
        RpcClient([devnet.rpc_url]) as direct,
    ):
        registry = background_registry(client, devnet)
        await registry.discover(t.address for t in devnet.tokens.values())
        every = set(registry.pool_refs)
        assert registry.loading_pools == every and not registry.stale_pools
        # a refresh before any pool is loaded loads nothing itself and reports nothing stale
        first = await registry.refresh(await head(direct))
        assert first.ok and registry.pools == {} and registry.loading_pools == every

        seen: list[tuple[int, int, int]] = []

        def progress(loaded: int, total: int) -> None:
            seen.append((loaded, total, len(registry.pools)))

        caplog.set_level(logging.INFO, logger="agent.dex.pools")
        await registry.load_pending(
            concurrency=2, batch_pools=3, progress=progress, forever=False, retry_initial_s=0.2
        )
        total = len(every)
        # the operator's progress
        assert f"pools loaded {total:,}/{total:,} [{'#' * 20}] 100%" in caplog.text
        assert seen[-1][:2] == (total, total) and not registry.loading_pools
        # usable batch by batch: pools were readable while others were still loading
        assert any(0 < usable < total for _loaded, _total, usable in seen)
        assert [loaded for loaded, _t, _u in seen] == sorted(loaded for loaded, _t, _u in seen)
        assert proxy.refused["rate"] > 0, "the provider never said 429"
        assert not registry.stale_pools

        # the next refresh brings every pool to the new head, exactly
        block = await head(direct)
        refreshed = await registry.refresh(block)
        assert refreshed.ok, refreshed.error
        for info in devnet.pools:
            pool = registry.get(info.address)
            if info.kind == "v2":
                assert pool == await fetch_v2_pool(
                    direct, info.address, registry.v2_fee_pips.get(info.dex, 3000), block
                )
            else:
                assert isinstance(pool, V3Pool)
                assert pool == await fetch_v3_pool(
                    direct, info.address, block, window_pct=WINDOW_PCT
                )


async def test_a_failed_first_load_is_retried_with_backoff_never_by_refresh(
    w3: Any, devnet: Devnet, caplog: pytest.LogCaptureFixture
) -> None:
    now = [1000.0]
    async with RpcClient([devnet.rpc_url]) as client:
        registry = background_registry(client, devnet)
        await registry.discover(t.address for t in devnet.tokens.values())
        real = next(p for p in devnet.pools if p.kind == "v3")
        missing = "0x000000000000000000000000000000000000dEaD"  # no pool there: reads revert
        registry.add_v3_pool(missing, real.token0, real.token1, real.fee_pips)
        caplog.set_level(logging.WARNING, logger="agent.dex.pools")
        await registry.load_pending(forever=False, retry_initial_s=5.0, clock=lambda: now[0])
        assert registry.loading_pools == {missing}
        assert missing not in registry.stale_pools and missing not in registry.pools
        assert "retrying in 5s" in caplog.text

        # refreshes keep every loaded pool exact and leave the failed one alone
        for _ in range(3):
            await client.call_raw("evm_mine")
            refreshed = await registry.refresh(await head(client))
            assert refreshed.ok, refreshed.error
            assert registry.loading_pools == {missing}
        assert registry.event_refreshes >= 2  # the pending pool does not block event updates

        # not due yet: no request at all
        requests = client.request_count
        await registry.load_pending(forever=False, retry_initial_s=5.0, clock=lambda: now[0])
        assert client.request_count == requests
        # due: tried again, and the next wait is twice as long
        now[0] += 6.0
        caplog.clear()
        await registry.load_pending(forever=False, retry_initial_s=5.0, clock=lambda: now[0])
        assert client.request_count > requests
        assert "retrying in 10s" in caplog.text and registry.loading_pools == {missing}


def test_the_progress_line_shows_a_bar_and_the_share_loaded() -> None:
    assert progress_bar(4_210, 10_000) == "4,210/10,000 [########------------] 42%"
    assert progress_bar(0, 10_000) == f"0/10,000 [{'-' * 20}] 0%"
    assert progress_bar(0, 0) == f"0/0 [{'#' * 20}] 100%"  # nothing to load
