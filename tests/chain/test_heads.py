"""A lying RPC node (a proxy in front of the real devnet node that rewrites one answer) cannot
steer the block source: a bogus head is refused and reported, the real heads after it go on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent.chain.heads import HeadGuard
from agent.chain.rpc import RpcClient, poll_new_blocks
from agent.devnet import Devnet
from agent.events import Event, EventBus, HeadRefused, HeadTrusted
from tests.fakes.rpc_proxy import FaultyRpcProxy

pytestmark = pytest.mark.chain

BOGUS_HEAD = 10**9


class Heads:
    """The guarded head stream consumed in the background, and what the bus heard."""

    def __init__(self, guard: HeadGuard, source: AsyncIterator[int], events: EventBus) -> None:
        self.seen: list[int] = []
        self.events: list[Event] = []
        events.subscribe(self.events.append)
        self._task = asyncio.create_task(self._consume(guard.guard(source)))

    async def _consume(self, heads: AsyncIterator[int]) -> None:
        async for number in heads:
            self.seen.append(number)

    async def reach(self, number: int) -> None:
        async with asyncio.timeout(30):
            while not self.seen or self.seen[-1] < number:
                if self._task.done():
                    self._task.result()
                await asyncio.sleep(0.01)

    def refused(self) -> list[HeadRefused]:
        return [e for e in self.events if isinstance(e, HeadRefused)]

    async def aclose(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@contextlib.asynccontextmanager
async def guarded_heads(urls: list[str], **guard_options: Any) -> AsyncIterator[Heads]:
    events = EventBus()
    async with RpcClient(urls, max_attempts=2, backoff_initial_s=0.001) as client:
        guard = HeadGuard(client, events, block_time_s=12.0, **guard_options)
        heads = Heads(guard, poll_new_blocks(client, poll_interval_s=0.01), events)
        try:
            yield heads
        finally:
            await heads.aclose()


async def head_of(devnet: Devnet) -> int:
    assert devnet.rpc is not None
    return int(await devnet.rpc.call("eth_blockNumber"), 16)


async def test_one_bogus_head_between_real_ones_is_refused_and_the_real_heads_go_on(
    w3: Any, devnet: Devnet
) -> None:
    async with (
        FaultyRpcProxy(devnet.rpc_url, failure_rate=0.0) as node,
        guarded_heads([node.url]) as heads,
    ):
        first = await head_of(devnet)
        await heads.reach(first)
        await devnet.mine(1)
        await heads.reach(first + 1)

        node.lie("eth_blockNumber", hex(BOGUS_HEAD))
        async with asyncio.timeout(30):
            while not heads.refused():
                await asyncio.sleep(0.01)
        await devnet.mine(1)
        await heads.reach(first + 2)
        await devnet.mine(1)
        await heads.reach(first + 3)

    assert node.told == [("eth_blockNumber", hex(BOGUS_HEAD))]
    assert heads.seen == [first, first + 1, first + 2, first + 3]
    [refused] = heads.refused()
    assert (refused.number, refused.reason, refused.last_good) == (
        BOGUS_HEAD,
        "too_far_ahead",
        first + 1,
    )
    trusted = [e for e in heads.events if isinstance(e, HeadTrusted)]
    assert [(e.number, e.refused) for e in trusted] == [(first + 2, 1)]


async def test_a_head_that_does_not_link_to_the_last_good_one_is_refused(
    w3: Any, devnet: Devnet
) -> None:
    async with (
        FaultyRpcProxy(devnet.rpc_url, failure_rate=0.0) as node,
        guarded_heads([node.url], grace_s=0.2) as heads,
    ):
        first = await head_of(devnet)
        await heads.reach(first)

        def forged(block: dict[str, Any]) -> dict[str, Any]:
            return {**block, "parentHash": "0x" + "ab" * 32}

        # the next block's header is forged (on every read) while it is the head
        node.lie("eth_getBlockByNumber", forged, times=2)
        await devnet.mine(1)
        async with asyncio.timeout(30):
            while not heads.refused():
                await asyncio.sleep(0.01)
        await devnet.mine(1)
        await heads.reach(first + 2)

    [refused] = heads.refused()
    assert (refused.number, refused.reason) == (first + 1, "broken_ancestry")
    assert heads.seen == [first, first + 2]


async def test_with_two_endpoints_a_head_the_other_does_not_serve_is_refused(
    w3: Any, devnet: Devnet
) -> None:
    async with (
        FaultyRpcProxy(devnet.rpc_url, failure_rate=0.0) as liar,
        guarded_heads([liar.url, devnet.rpc_url], grace_s=0.2) as heads,
    ):
        first = await head_of(devnet)
        await heads.reach(first)

        def other_chain(block: dict[str, Any]) -> dict[str, Any]:
            return {**block, "hash": "0x" + "cd" * 32}

        liar.lie("eth_getBlockByNumber", other_chain, times=1000)
        await devnet.mine(1)
        async with asyncio.timeout(30):
            while not heads.refused():
                await asyncio.sleep(0.01)
        liar._lies.clear()  # the node is honest again
        await devnet.mine(1)
        await heads.reach(first + 2)

    [refused] = heads.refused()
    assert (refused.number, refused.reason) == (first + 1, "unconfirmed")
    assert heads.seen == [first, first + 2]


async def test_a_dead_second_endpoint_does_not_stop_the_heads(w3: Any, devnet: Devnet) -> None:
    async with (
        FaultyRpcProxy(devnet.rpc_url, failure_rate=0.0) as backup,
        guarded_heads([devnet.rpc_url, backup.url], grace_s=0.2) as heads,
    ):
        backup.cut()
        first = await head_of(devnet)
        await heads.reach(first)
        await devnet.mine(1)
        await heads.reach(first + 1)
    assert heads.refused() == []
