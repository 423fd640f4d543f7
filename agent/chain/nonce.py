"""Per-account nonce allocation that is safe under concurrent intents.

The node's pending transaction count is read once; after that nonces are handed out locally
under an ``asyncio.Lock`` so fifty concurrent sends get fifty distinct consecutive nonces without
fifty round trips. A nonce whose send failed before it reached any node is released and handed
out again first (lowest first), so no gap can strand later transactions. On "nonce too low" (some
other process used the account) or a detected gap, ``resync`` re-reads the chain.

A transaction sent privately (a protect RPC, a bundle relay) is invisible to the public node's
pending count: its nonce is *held* (``hold``), and the count the manager starts or resyncs from
is never below the highest held nonce + 1, so no nonce is reused while it is pending there. A
held nonce the chain has passed is forgotten; one whose transaction will never land (a bundle
past its last target block) is given back with ``expire``.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from typing import Any

from web3 import AsyncWeb3

log = logging.getLogger(__name__)


class NonceManager:
    """Hands out nonces for ``address``.

    Life of a nonce: ``allocate`` -> (signed, journaled) -> ``mark_broadcast`` once a node has
    it, or ``release`` if the send failed before any node saw it.
    """

    def __init__(self, w3: AsyncWeb3[Any], address: str) -> None:
        self._w3 = w3
        self.address = AsyncWeb3.to_checksum_address(address)
        self._lock = asyncio.Lock()
        self._next: int | None = None
        self._released: list[int] = []  # min-heap of nonces to hand out again
        self._unbroadcast: set[int] = set()  # allocated, not yet known to any node
        self._held: set[int] = set()  # pending where the public node cannot see them

    async def _chain_pending_count(self) -> int:
        """The public node's pending count, raised above every nonce held privately."""
        count = int(await self._w3.eth.get_transaction_count(self.address, "pending"))
        self._held = {n for n in self._held if n >= count}  # the chain has passed the rest
        return max(count, max(self._held) + 1) if self._held else count

    async def allocate(self) -> int:
        """The next nonce to use. Reads the chain's pending count on first use."""
        async with self._lock:
            if self._next is None:
                self._next = await self._chain_pending_count()
                log.info("nonce manager for %s starts at %d", self.address, self._next)
            if self._released:
                nonce = heapq.heappop(self._released)
            else:
                nonce = self._next
                self._next += 1
            self._unbroadcast.add(nonce)
            return nonce

    async def mark_broadcast(self, nonce: int) -> None:
        """A node accepted the transaction with ``nonce``: it is spent for good."""
        async with self._lock:
            self._unbroadcast.discard(nonce)

    async def hold(self, nonce: int) -> None:
        """``nonce``'s transaction is pending privately (protect RPC, bundle relay): never
        hand it out again, whatever the public node's pending count says."""
        async with self._lock:
            self._held.add(nonce)
            self._unbroadcast.discard(nonce)
            if self._next is not None and nonce >= self._next:
                self._next = nonce + 1

    async def expire(self, nonce: int) -> None:
        """``nonce``'s private transaction will never land (a bundle past its last target
        block, checked against the chain): hand the nonce out again."""
        async with self._lock:
            self._held.discard(nonce)
            self._unbroadcast.add(nonce)
            self._release_locked(nonce)

    async def release(self, nonce: int) -> None:
        """The send with ``nonce`` failed before reaching any node: hand it out again."""
        async with self._lock:
            self._release_locked(nonce)

    def _release_locked(self, nonce: int) -> None:
        if nonce not in self._unbroadcast:
            return
        self._unbroadcast.discard(nonce)
        if self._next is None:
            return  # nothing handed out yet: the first allocation reads the chain
        if nonce == self._next - 1:
            self._next -= 1
            # Released nonces just below the new top collapse into it as well.
            while self._released and max(self._released) == self._next - 1:
                self._released.remove(self._next - 1)
                heapq.heapify(self._released)
                self._next -= 1
        else:
            heapq.heappush(self._released, nonce)

    async def resync(self) -> int:
        """Re-read the chain after "nonce too low" or a suspected gap; returns the next nonce.

        If the chain is ahead (another sender used this account) we jump forward and forget
        released nonces below it. If the chain is behind and none of our allocations is still
        in flight, the missing nonces were dropped by the node: start again from the chain's count.
        """
        async with self._lock:
            chain_next = await self._chain_pending_count()
            local_next = self._next
            next_nonce = local_next
            if local_next is None or chain_next >= local_next:
                next_nonce = chain_next
            elif not self._unbroadcast:
                log.warning(
                    "nonce gap for %s: local next %d, chain pending %d; reusing from %d",
                    self.address,
                    local_next,
                    chain_next,
                    chain_next,
                )
                next_nonce = chain_next
            assert next_nonce is not None
            self._next = next_nonce
            # Nonces below the chain's count are spent, whoever spent them.
            self._unbroadcast = {n for n in self._unbroadcast if n >= chain_next}
            self._released = [n for n in self._released if chain_next <= n < next_nonce]
            heapq.heapify(self._released)
            return min(self._released) if self._released else next_nonce

    @property
    def next_nonce(self) -> int | None:
        """The next fresh nonce (``None`` before first use); for reporting."""
        return self._next
