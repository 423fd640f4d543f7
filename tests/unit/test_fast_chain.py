"""Fast chains, without a chain: the engine's head source hands over the newest head, never a
backlog; the lag and the skipped heads reach /health and /metrics from the engine's events.
(The whole agent on a 250 ms Anvil is tests/e2e/test_fast_chain_e2e.py.)"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest

from agent import events as ev
from agent.chain.blocks import newest
from agent.errors import RpcTransportError
from agent.metrics.server import AgentMetrics, HealthState

End = None


async def heads_from(
    queue: asyncio.Queue[int | Exception | None], closed: list[str]
) -> AsyncIterator[int]:
    """A head source the test feeds: a number is a head, an exception a failure, None the end."""
    try:
        while (item := await queue.get()) is not End:
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        closed.append("closed")


async def drained(queue: asyncio.Queue[int | Exception | None]) -> None:
    async with asyncio.timeout(5):
        while not queue.empty():
            await asyncio.sleep(0)
        await asyncio.sleep(0)


async def test_a_busy_consumer_gets_the_newest_head_never_a_backlog() -> None:
    queue: asyncio.Queue[int | Exception | None] = asyncio.Queue()
    closed: list[str] = []
    heads = newest(heads_from(queue, closed))
    queue.put_nowait(1)
    assert await anext(heads) == 1
    for number in (2, 3, 4):  # three heads while the consumer ticks
        queue.put_nowait(number)
    await drained(queue)
    assert await anext(heads) == 4  # 2 and 3 are skipped, not worked through
    waiting = asyncio.ensure_future(anext(heads))
    await asyncio.sleep(0.01)
    assert not waiting.done()  # nothing newer yet: the consumer waits for the next head
    queue.put_nowait(5)
    assert await waiting == 5
    await heads.aclose()
    assert closed == ["closed"]  # the source is closed with it (its task cancelled)


async def test_the_sources_end_and_failure_reach_the_consumer_after_its_last_head() -> None:
    queue: asyncio.Queue[int | Exception | None] = asyncio.Queue()
    closed: list[str] = []
    heads = newest(heads_from(queue, closed))
    queue.put_nowait(7)
    queue.put_nowait(End)
    assert [number async for number in heads] == [7]

    queue.put_nowait(8)
    queue.put_nowait(RpcTransportError("connection reset"))
    failing = newest(heads_from(queue, closed))
    assert await anext(failing) == 8
    with pytest.raises(RpcTransportError):
        await anext(failing)
    assert closed == ["closed", "closed"]


def test_lag_and_skipped_heads_on_health_and_metrics() -> None:
    bus = ev.EventBus()
    now = [1_000.0]
    health = HealthState(clock=lambda: now[0])
    health.subscribe(bus)
    metrics = AgentMetrics()
    metrics.subscribe(bus)
    assert health.report().head_lag_s is None  # no tick yet: no lag to speak of

    bus.publish(ev.HeadSeen(number=100))
    bus.publish(ev.Tick(block=100, opportunities=0, approved=0, started=0, block_timestamp=998.0))
    bus.publish(ev.HeadSeen(number=103))
    bus.publish(ev.HeadSeen(number=104))
    report = health.report()
    assert (report.head_lag_blocks, report.head_lag_s, report.heads_skipped) == (4, 2.0, 0)

    # the engine took 104, skipping 101-103; the chain's clock runs ahead of ours now
    bus.publish(
        ev.Tick(
            block=104,
            opportunities=0,
            approved=0,
            started=0,
            block_timestamp=1_005.0,
            heads_skipped=3,
        )
    )
    report = health.report()
    assert (report.head_lag_blocks, report.head_lag_s, report.heads_skipped) == (0, -5.0, 3)
    assert report.to_json()["heads_skipped"] == 3

    text = metrics.exposition().decode()
    values = dict(re.findall(r"^(defi_agent_\w+) (\S+)$", text, re.MULTILINE))
    assert float(values["defi_agent_heads_skipped_total"]) == 3
    assert float(values["defi_agent_head_lag_blocks"]) == 0
    assert "defi_agent_head_lag_seconds" in values
