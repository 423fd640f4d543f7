"""The RPC client's pacing keeps a provider's requests-per-second cap even when the event loop
wakes its waiting requests late (held by decoding a large answer): they never go out in a burst
over the cap."""

from __future__ import annotations

import asyncio
import time

from agent.chain.rpc import RequestPacer


async def test_requests_woken_late_still_leave_at_most_per_s_a_second() -> None:
    pacer = RequestPacer(5)
    sent: list[float] = []

    async def request() -> None:
        await pacer.wait()
        sent.append(time.monotonic())

    tasks = [asyncio.create_task(request()) for _ in range(12)]
    await asyncio.sleep(0.05)
    time.sleep(0.9)  # noqa: ASYNC251 - the loop held: every waiter due meanwhile wakes at once
    await asyncio.gather(*tasks)
    assert len(sent) == 12
    assert max(sum(start <= t < start + 1.0 for t in sent) for start in sent) <= 5
