"""Plausibility of chain heads: a lying or broken node cannot steer the agent with a bogus one.

``HeadGuard.guard(source)`` sits between the block source (polling or websocket) and the
engine. A head is acted on only if it is plausible:

- **elapsed time**: it is not further past the last good head than the chain can have moved
  since then (``max_plausible_gap``): one answer of 10^9 between two real heads is refused
  before anything is asked;
- **existence**: the node serves the block's header, with that number (a fresh head may lag
  its header by a moment, so the read is retried for ``grace_s``);
- **ancestry**: the header links to the last good head through its parent hashes (the blocks
  between read in one batch, for a gap of a few blocks); a head that does not is a reorg when
  the node's block at the last good height changed too, and refused when the node contradicts
  itself;
- **other endpoints**: with several ``chain.rpc_urls`` the head's hash must be served by at
  least two of them within ``grace_s``; when only one endpoint answers at all, the other checks
  stand alone (a dead backup never stops the agent).

A refused head is logged (once per run of refusals, then at debug level) and published as
``HeadRefused``; the first plausible head after refusals publishes ``HeadTrusted``. Heads at or
below the last good one are not new: they are dropped without a check.

Each accepted header goes to ``RecentHeaders``, where the market snapshot finds its block's
timestamp without asking the node again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from agent.chain.rpc import RpcClient
from agent.errors import AgentError, RpcTransportError
from agent.events import EventBus, HeadRefused, HeadTrusted, Throttle

log = logging.getLogger(__name__)

# Blocks a head may be ahead of the last good one whatever the elapsed time (bursts, a chain
# that briefly produces faster, a clock step): a bogus number is refused by orders of magnitude.
GAP_ALLOWANCE_BLOCKS = 256
# The chain may produce blocks this many times faster than its nominal block time.
BLOCK_RATE_TOLERANCE = 4.0
# Blocks between the last good head and a new one whose parent links are checked (one batch).
MAX_ANCESTRY_WALK = 8


@dataclass(frozen=True, slots=True)
class Header:
    """The parts of a block header the checks read (hashes as 0x hex, timestamp in seconds)."""

    number: int
    hash: str
    parent_hash: str
    timestamp: int

    @classmethod
    def from_rpc(cls, block: Any) -> Header:
        """From an ``eth_getBlock*`` result; a malformed one is the node's failure
        (``RpcTransportError``), never a crash of the block source."""
        try:
            return cls(
                number=int(block["number"], 16),
                hash=str(block["hash"]).lower(),
                parent_hash=str(block["parentHash"]).lower(),
                timestamp=int(block["timestamp"], 16),
            )
        except (KeyError, TypeError, ValueError):
            raise RpcTransportError("malformed block header") from None


class RecentHeaders:
    """Headers of recent blocks by number: the head checks leave every header they accept
    here; a block no check read (the first refresh, a block handed in by a test) is read from
    the node once. The latest ``keep`` are kept."""

    def __init__(self, rpc: RpcClient, *, keep: int = 256) -> None:
        self.rpc = rpc
        self.keep = keep
        self._headers: dict[int, Header] = {}

    def add(self, header: Header) -> None:
        """Remember ``header`` (replacing one of the same number: a reorg's)."""
        self._headers.pop(header.number, None)
        self._headers[header.number] = header
        if len(self._headers) > self.keep:
            del self._headers[next(iter(self._headers))]  # the one added longest ago

    async def get(self, number: int) -> Header:
        """The header of block ``number``; ``RpcTransportError`` when the node has none."""
        header = self._headers.get(number)
        if header is None:
            block = await self.rpc.call_raw("eth_getBlockByNumber", [hex(number), False])
            if block is None:
                raise RpcTransportError(f"the node has no block {number}")
            header = Header.from_rpc(block)
            self.add(header)
        return header

    async def timestamp(self, number: int) -> float:
        """Block ``number``'s timestamp (seconds since the epoch, from its header)."""
        return float((await self.get(number)).timestamp)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a head is not acted on: a short code and a sentence for the operator."""

    reason: str
    detail: str


def max_plausible_gap(elapsed_s: float, block_time_s: float) -> int:
    """The most blocks a chain with ``block_time_s`` (seconds) can have added in ``elapsed_s``
    seconds, generously: ``BLOCK_RATE_TOLERANCE`` times the nominal rate plus a fixed
    allowance."""
    rate = BLOCK_RATE_TOLERANCE / block_time_s
    return GAP_ALLOWANCE_BLOCKS + math.ceil(max(elapsed_s, 0.0) * rate)


def check_gap(last: int, number: int, elapsed_s: float, block_time_s: float) -> Refusal | None:
    """Refuse ``number`` if it is further past ``last`` than ``elapsed_s`` seconds allow."""
    allowed = max_plausible_gap(elapsed_s, block_time_s)
    if number - last <= allowed:
        return None
    return Refusal(
        "too_far_ahead",
        f"block {number} is {number - last} blocks past the last good head {last} after "
        f"{elapsed_s:.0f}s (at most {allowed} plausible)",
    )


def check_time(last: Header, header: Header) -> Refusal | None:
    """A newer block is never timestamped before the last good head (no I/O)."""
    if header.timestamp >= last.timestamp:
        return None
    return Refusal(
        "time_backwards",
        f"block {header.number} is timestamped {last.timestamp - header.timestamp}s before "
        f"the last good head {last.number}",
    )


class HeadGuard:
    """Passes on only plausible heads of ``source`` (see the module docstring).

    ``block_time_s`` is the chain's nominal block time (seconds); ``grace_s`` how long a fresh
    head may take to be served (by this node and, with several endpoints, by another one);
    ``headers`` receives every accepted header.
    """

    def __init__(
        self,
        rpc: RpcClient,
        events: EventBus,
        *,
        block_time_s: float,
        grace_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        headers: RecentHeaders | None = None,
    ) -> None:
        self.rpc = rpc
        self.events = events
        self.headers = headers  # where accepted headers go (block timestamps), if anywhere
        self.block_time_s = block_time_s
        self.grace_s = grace_s
        self._clock = clock
        self.last: Header | None = None
        self._last_at: float | None = None
        self.refused = 0  # heads refused in total (metrics, tests)
        self._refusing = 0  # heads refused since the last plausible one
        self._cross_check_unavailable = False
        self._unchecked_log = Throttle(60.0)

    async def guard(self, source: AsyncIterator[int]) -> AsyncIterator[int]:
        """``source``'s heads, the implausible ones left out."""
        async for number in source:
            if self.last is not None and number <= self.last.number:
                continue  # not a new head (a replay, a lagging node, the source after a lie)
            try:
                header = await self.check(number)
            except AgentError as exc:  # the checks themselves could not be made: next head
                if self._unchecked_log.ready():
                    log.warning(
                        "head %d could not be checked (%s): skipped (repeats logged at most "
                        "every %.0fs)",
                        number,
                        type(exc).__name__,
                        self._unchecked_log.interval_s,
                    )
                continue
            if header is not None:
                yield header.number

    async def check(self, number: int) -> Header | None:
        """The header of ``number`` if it is a plausible new head (it becomes the last good
        one), else None (refused and reported)."""
        now = self._clock()
        if self.last is not None and self._last_at is not None:
            refusal = check_gap(self.last.number, number, now - self._last_at, self.block_time_s)
            if refusal is not None:
                self._refuse(number, refusal)
                return None
        header, refusal = await self._confirmed_header(number)
        if refusal is None and header is not None and self.last is not None:
            refusal = check_time(self.last, header)
            if refusal is None:
                refusal = await self._check_ancestry(header)
        if refusal is not None or header is None:
            self._refuse(number, refusal or Refusal("unknown_block", f"no block {number}"))
            return None
        self._accept(header)
        return header

    # -- the node's header, confirmed by the other endpoints -----------------------------------

    async def _confirmed_header(self, number: int) -> tuple[Header | None, Refusal | None]:
        deadline = self._clock() + self.grace_s
        step_s = max(self.grace_s / 10, 0.01)
        while True:
            header, refusal, final = await self._read_header(number)
            if final or self._clock() >= deadline:
                return header, refusal
            await asyncio.sleep(step_s)

    async def _read_header(self, number: int) -> tuple[Header | None, Refusal | None, bool]:
        """(header, refusal, final): final when waiting longer cannot change the verdict."""
        params = [hex(number), False]
        if len(self.rpc.rpc_urls) == 1:
            block = await self.rpc.call_raw("eth_getBlockByNumber", params)
            if block is None:
                return None, Refusal("unknown_block", f"the node has no block {number}"), False
            return self._numbered(number, Header.from_rpc(block))
        replies = await asyncio.gather(
            *(
                self.rpc.call_endpoint(index, "eth_getBlockByNumber", params)
                for index in range(len(self.rpc.rpc_urls))
            ),
            return_exceptions=True,
        )
        answers: list[Header | None] = []
        for reply in replies:
            if isinstance(reply, BaseException):
                if not isinstance(reply, AgentError):
                    raise reply
                continue  # this endpoint is down: it neither confirms nor contradicts
            try:
                answers.append(None if reply is None else Header.from_rpc(reply))
            except RpcTransportError:
                continue  # nor does one that answers garbage
        known = [h for h in answers if h is not None]
        for candidate in known:
            if sum(h.hash == candidate.hash for h in known) >= 2:
                self._cross_check_unavailable = False
                return self._numbered(number, candidate)
        if len(answers) <= 1:
            # Only one endpoint answers: the other checks stand alone until another is back.
            if not self._cross_check_unavailable:
                self._cross_check_unavailable = True
                log.warning("heads cannot be cross-checked: only one RPC endpoint answers")
            if not known:
                return None, Refusal("unknown_block", f"no endpoint has block {number}"), False
            return self._numbered(number, known[0])
        return (
            None,
            Refusal(
                "unconfirmed",
                f"no two of {len(answers)} endpoints agree on block {number}",
            ),
            False,
        )

    @staticmethod
    def _numbered(number: int, header: Header) -> tuple[Header | None, Refusal | None, bool]:
        if header.number != number:
            return (
                None,
                Refusal("wrong_number", f"block {number} is numbered {header.number}"),
                True,
            )
        return header, None, True

    # -- ancestry ------------------------------------------------------------------------------

    async def _check_ancestry(self, header: Header) -> Refusal | None:
        """Does ``header`` descend from the last good head? The blocks between are read in one
        batch and their parent links checked; a chain that moved under us is a reorg
        (accepted), a node that contradicts itself is refused. Past ``MAX_ANCESTRY_WALK``
        blocks only the gap and the other endpoints vouch for the head."""
        last = self.last
        assert last is not None
        between = range(last.number + 1, header.number)
        if len(between) > MAX_ANCESTRY_WALK:
            return None
        blocks = await self.rpc.batch_raw(
            [("eth_getBlockByNumber", [hex(n), False]) for n in between]
        )
        chain = [last]
        for number, block in zip(between, blocks, strict=True):
            if block is None:
                return Refusal(
                    "broken_ancestry", f"the node serves block {header.number} but not {number}"
                )
            chain.append(Header.from_rpc(block))
        chain.append(header)
        for parent, child in itertools.pairwise(chain[1:]):  # the link to ``last`` comes next
            if child.parent_hash != parent.hash or child.number != parent.number + 1:
                return Refusal(
                    "broken_ancestry",
                    f"block {child.number}'s parent is not block {parent.number}",
                )
        if chain[1].parent_hash == last.hash:
            return None
        # The head does not descend from ours: a reorg if the node replaced our last head too.
        block = await self.rpc.call_raw("eth_getBlockByNumber", [hex(last.number), False])
        if block is not None and Header.from_rpc(block).hash != last.hash:
            log.info("reorg: block %d was replaced (head %d)", last.number, header.number)
            return None
        return Refusal(
            "broken_ancestry",
            f"block {header.number} does not descend from the last good head {last.number}",
        )

    # -- verdicts ------------------------------------------------------------------------------

    def _accept(self, header: Header) -> None:
        if self._refusing:
            log.warning(
                "block source trusted again at block %d after %d refused head(s)",
                header.number,
                self._refusing,
            )
            self.events.publish(HeadTrusted(number=header.number, refused=self._refusing))
            self._refusing = 0
        self.last = header
        self._last_at = self._clock()
        if self.headers is not None:
            self.headers.add(header)

    def _refuse(self, number: int, refusal: Refusal) -> None:
        self.refused += 1
        self._refusing += 1
        last_good = None if self.last is None else self.last.number
        if self._refusing == 1:
            log.warning("head %d refused (%s): %s", number, refusal.reason, refusal.detail)
        else:
            log.debug("head %d refused (%s): %s", number, refusal.reason, refusal.detail)
        self.events.publish(
            HeadRefused(
                number=number, reason=refusal.reason, last_good=last_good, detail=refusal.detail
            )
        )
