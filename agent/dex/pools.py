"""Pool discovery and per-block refresh: every pool's exact state for about one request a block.

Two ways to bring pools to a block:

* Re-read (the first load, and whenever events cannot be used): ``refresh(block)`` sends one
  batch with Multicall3 ``eth_call``s reading V2 ``getReserves`` and V3 ``slot0`` +
  ``liquidity`` of every pool, and ``eth_getLogs`` for V3 ``Mint``/``Burn`` since the last
  refresh. Only pools with such logs get a second read, and only of the ticks the logs name.
  The first read of a V3 pool loads its tick state through ``tickBitmap`` words and
  ``ticks()`` (gross and net liquidity): every word, or those of the window (below).
* Event-driven (``event_driven=True``, after every pool is loaded): one batch holding one
  ``eth_getLogs`` for ``Sync`` / ``Swap`` / ``Mint`` / ``Burn`` of every pool (pieces within
  the provider's block range; by topic alone above 1,000 pools, other contracts' logs dropped
  here), the headers of the last applied and the new block, and a rotating
  spot check of ``spot_check_size`` pools. Logs are applied in chain order with their exact
  effect (V2 reserves; V3 price, tick and liquidity after a swap; a Mint/Burn's gross and net
  liquidity on both ticks, and the active liquidity when the price is inside the range). A
  spot-checked pool that differs from the chain is reloaded and counted (``drift_count``). A
  changed header hash is a reorg: the pools the replaced blocks changed (hashes and touched
  pools of the last 128 blocks are kept) are reloaded, the new blocks' logs applied. Logs that
  cannot be read fall back to the re-read.

V3 tick data: with ``tick_window_pct`` only the tickBitmap words covering the prices within that
many percent of the current one are read (``tick_window_words``; ``V3Pool.loaded_tick_range``
records them), and a quote that would leave them raises ``TicksNotLoaded``. After each refresh
the window is extended where the price moved toward an edge or a quote was refused (the missing
words only). Mint/Burn logs for ticks outside the words are not applied to the table (nothing is
known there; the whole word is read when the window reaches it). A first load of a V3 pool is
``slot0`` + ``liquidity``, one ``tickBitmap(int16)`` per word of the window (8-9 for fee 100
at 10%, 1-2 for the other tiers) and one ``ticks(int24)`` per initialized tick in them: the pool
answers one word or one tick per call and the ticks are only known from the words, so that is
the minimum it allows (TickLens is per word too), in three dependent multicall rounds.

First loads in the background (``background_load``): new pools are pending until
``load_pending`` (a background job) loads them in bounded batches, at the block the loaded pools
are at; refreshes skip them, they are ``loading_pools`` rather than stale, and a failed load is
retried after a doubling backoff, never inside a refresh.

Every read is within ``limits`` (``agent.chain.limits``): the RPC client splits batches, log
ranges are planned and a refused range is split. All reads of one refresh are pinned to the
same block. A re-read gives every pool a state carrying that block; an event-driven refresh
replaces only the states its logs changed (rebuilding 10,000 unchanged states cost more than
the rest of the refresh), so a state's ``block`` is where it was read or last changed, and
every pool not in ``stale_pools`` is exact at ``last_block``.

A pool whose read failed keeps its last good state and is listed in ``stale_pools`` (with the
error); it is never replaced by zeros. ``refresh`` never raises for RPC trouble: it returns a
``RefreshResult`` saying what failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_abi import encode
from eth_utils import to_checksum_address

from agent.chain.abi import event_topic, selector
from agent.chain.limits import UNLIMITED, ProviderLimits
from agent.chain.logs import get_logs, log_request, plan_log_ranges
from agent.chain.multicall import Call, CallResult, JsonRpcBatcher, Multicall, Web3Batcher
from agent.dex.v2 import DEFAULT_FEE_PIPS, V2Pool
from agent.dex.v3 import FEE_TIERS_PIPS, TICK_SPACING_BY_FEE, V3Pool
from agent.dex.v3_math import MAX_TICK, MIN_TICK
from agent.errors import AgentError, PoolReadError

log = logging.getLogger(__name__)

Pool = V2Pool | V3Pool


GET_RESERVES = selector("getReserves()")
TOKEN0 = selector("token0()")
TOKEN1 = selector("token1()")
SLOT0 = selector("slot0()")
LIQUIDITY = selector("liquidity()")
FEE = selector("fee()")
TICK_SPACING = selector("tickSpacing()")
TICK_BITMAP = selector("tickBitmap(int16)")
TICKS = selector("ticks(int24)")
GET_PAIR = selector("getPair(address,address)")
GET_POOL = selector("getPool(address,address,uint24)")

MINT_TOPIC = event_topic("Mint(address,address,int24,int24,uint128,uint256,uint256)")
BURN_TOPIC = event_topic("Burn(address,int24,int24,uint128,uint256,uint256)")
SWAP_TOPIC = event_topic("Swap(address,address,int256,int256,uint160,uint128,int24)")
SYNC_TOPIC = event_topic("Sync(uint112,uint112)")

_ZERO_ADDRESS = "0x" + "00" * 20


# --- decoding (return data is fixed-layout: plain slicing beats a generic ABI decoder) --------


def _word(data: bytes, index: int) -> int:
    return int.from_bytes(data[32 * index : 32 * index + 32], "big")


def _signed_word(data: bytes, index: int) -> int:
    return int.from_bytes(data[32 * index : 32 * index + 32], "big", signed=True)


def _address(data: bytes) -> str:
    if len(data) != 32:
        raise ValueError("address return is not one word")
    return to_checksum_address(data[12:32])


def _need(result: CallResult, words: int) -> bytes:
    if not result.success:
        raise ValueError(result.error or "call reverted")
    if len(result.return_data) < 32 * words:
        raise ValueError(f"return data too short ({len(result.return_data)} bytes)")
    return result.return_data


def _int16(value: int) -> bytes:
    return value.to_bytes(32, "big", signed=True)


def progress_bar(done: int, total: int, width: int = 20) -> str:
    """``4,210/10,000 [########------------] 42%``: the first load's progress, one log line."""
    share = done / total if total else 1.0
    filled = min(width, int(share * width))
    return f"{done:,}/{total:,} [{'#' * filled}{'-' * (width - filled)}] {share:.0%}"


def tick_bitmap_word_range(tick_spacing: int) -> range:
    """Every bitmap word position a pool with ``tick_spacing`` can have a bit in."""
    return range((MIN_TICK // tick_spacing) >> 8, ((MAX_TICK // tick_spacing) >> 8) + 1)


_LOG_TICK_BASE = math.log(1.0001)  # a tick is a 0.01% price step


def _window_offsets(window_pct: float) -> tuple[int, int]:
    """Ticks from the current one to the window's lowest (negative) and highest price."""
    return (
        math.floor(math.log(1 - window_pct / 100) / _LOG_TICK_BASE),
        math.ceil(math.log(1 + window_pct / 100) / _LOG_TICK_BASE),
    )


def tick_window_words(tick: int, tick_spacing: int, window_pct: float) -> range:
    """The bitmap words holding every tick of the prices within ``window_pct`` percent (0-100,
    exclusive) of the price at ``tick``: for 10%, about 2,000 ticks, so 8-9 words for a
    fee-100 pool (spacing 1) and 1-2 for spacing 10 and up."""
    below, above = _window_offsets(window_pct)
    every = tick_bitmap_word_range(tick_spacing)
    # the word of the current tick + 1 too: a swap up starts reading there
    first = (max(tick + below, MIN_TICK) // tick_spacing) >> 8
    last = (min(max(tick + above, tick + tick_spacing), MAX_TICK) // tick_spacing) >> 8
    return range(max(first, every.start), min(last, every.stop - 1) + 1)


def loaded_tick_range(words: range, tick_spacing: int) -> tuple[int, int] | None:
    """``(lowest, highest)`` tick of the bitmap ``words`` (what ``V3Pool.loaded_tick_range``
    holds), or None when they are every word the pool can have."""
    every = tick_bitmap_word_range(tick_spacing)
    if words.start <= every.start and words.stop >= every.stop:
        return None
    return (
        max((words.start << 8) * tick_spacing, MIN_TICK),
        min(((words.stop << 8) - 1) * tick_spacing, MAX_TICK),
    )


# --- one-off fetches ---------------------------------------------------------------------------


def _batcher(rpc: Any) -> JsonRpcBatcher:
    return rpc if hasattr(rpc, "batch") else Web3Batcher(rpc)


async def fetch_v2_pool(
    rpc: Any, address: str, fee_pips: int = DEFAULT_FEE_PIPS, block: int | None = None
) -> V2Pool:
    """token0, token1 and reserves of the V2 pair at ``address`` in one multicall.

    ``rpc`` is an ``AsyncWeb3`` or an ``agent.chain.rpc.RpcClient``. Raises ``PoolReadError``
    when a read fails.
    """
    multicall = Multicall(_batcher(rpc))
    address = to_checksum_address(address)
    answer = await multicall.aggregate(
        [Call(address, TOKEN0), Call(address, TOKEN1), Call(address, GET_RESERVES)], block
    )
    try:
        token0 = _address(_need(answer.results[0], 1))
        token1 = _address(_need(answer.results[1], 1))
        reserves = _need(answer.results[2], 2)
    except ValueError as exc:
        raise PoolReadError(f"V2 pool {address}: {exc}") from None
    return V2Pool(
        address,
        token0,
        token1,
        _word(reserves, 0),
        _word(reserves, 1),
        fee_pips,
        answer.block_number or 0,
    )


async def fetch_v3_pool(
    rpc: Any, address: str, block: int | None = None, window_pct: float | None = None
) -> V3Pool:
    """Full state of the V3 pool at ``address``: slot0, liquidity, fee, spacing and every
    initialized tick (bitmap words, then ``ticks()``), all read at one block.

    With ``window_pct`` only the bitmap words within that many percent of the current price
    are read (``tick_window_words``; the pool's ``loaded_tick_range`` says which).
    ``rpc`` is an ``AsyncWeb3`` or an ``agent.chain.rpc.RpcClient``. Raises ``PoolReadError``
    when a read fails.
    """
    multicall = Multicall(_batcher(rpc))
    address = to_checksum_address(address)
    head = await multicall.aggregate(
        [
            Call(address, TOKEN0),
            Call(address, TOKEN1),
            Call(address, FEE),
            Call(address, TICK_SPACING),
            Call(address, SLOT0),
            Call(address, LIQUIDITY),
        ],
        block,
    )
    try:
        token0 = _address(_need(head.results[0], 1))
        token1 = _address(_need(head.results[1], 1))
        fee_pips = _word(_need(head.results[2], 1), 0)
        tick_spacing = _signed_word(_need(head.results[3], 1), 0)
        slot0 = _need(head.results[4], 2)
        liquidity = _word(_need(head.results[5], 1), 0)
    except ValueError as exc:
        raise PoolReadError(f"V3 pool {address}: {exc}") from None
    pinned = head.block_number
    if pinned is None:
        raise PoolReadError(f"V3 pool {address}: the read was not pinned to a block")
    tick = _signed_word(slot0, 1)
    words = (
        tick_bitmap_word_range(tick_spacing)
        if window_pct is None
        else tick_window_words(tick, tick_spacing, window_pct)
    )
    ticks = await load_v3_ticks(multicall, [(address, tick_spacing)], pinned, {address: words})
    if address not in ticks:
        raise PoolReadError(f"V3 pool {address}: tick state could not be read")
    return V3Pool(
        address,
        token0,
        token1,
        fee_pips,
        tick_spacing,
        _word(slot0, 0),
        tick,
        liquidity,
        tuple(sorted(ticks[address].items())),
        pinned,
        loaded_tick_range=loaded_tick_range(words, tick_spacing),
    )


async def load_v3_ticks(
    multicall: Multicall,
    pools: Sequence[tuple[str, int]],
    block: int,
    words: Mapping[str, Iterable[int]] | None = None,
) -> dict[str, dict[int, int]]:
    """``{pool: {tick: liquidity_net}}`` of every initialized tick, for ``(address,
    tick_spacing)`` pools, read at ``block`` (two batched rounds: bitmap words, then ticks).
    ``words`` names the bitmap word positions to read for a pool (default: all of them).

    Pools whose reads failed are missing from the answer.
    """
    tables = await load_v3_tick_tables(multicall, pools, block, words)
    return {pool: {t: net for t, (_g, net) in table.items()} for pool, table in tables.items()}


async def load_v3_tick_tables(
    multicall: Multicall,
    pools: Sequence[tuple[str, int]],
    block: int,
    words: Mapping[str, Iterable[int]] | None = None,
) -> dict[str, dict[int, tuple[int, int]]]:
    """``{pool: {tick: (liquidity_gross, liquidity_net)}}`` like ``load_v3_ticks``: the gross
    liquidity is what Mint and Burn events change, and a tick exists while it is above 0.

    One ``tickBitmap(int16)`` call per word, then one ``ticks(int24)`` per set bit: the pool
    has no call that returns more than one word or one tick."""
    word_calls: list[Call] = []
    owners: list[tuple[str, int, int]] = []
    for address, spacing in pools:
        positions = words.get(address) if words is not None else None
        for word_pos in tick_bitmap_word_range(spacing) if positions is None else positions:
            word_calls.append(Call(address, TICK_BITMAP + _int16(word_pos)))
            owners.append((address, spacing, word_pos))
    bitmaps = await multicall.aggregate(word_calls, block)
    failed: set[str] = set()
    tick_calls: list[Call] = []
    tick_owners: list[tuple[str, int]] = []
    for (address, spacing, word_pos), result in zip(owners, bitmaps.results, strict=True):
        if not result.success or len(result.return_data) != 32:
            failed.add(address)
            continue
        word = int.from_bytes(result.return_data, "big")
        while word:
            low_bit = word & -word
            tick = ((word_pos << 8) + low_bit.bit_length() - 1) * spacing
            tick_calls.append(Call(address, TICKS + _int16(tick)))
            tick_owners.append((address, tick))
            word ^= low_bit
    answer: dict[str, dict[int, tuple[int, int]]] = {a: {} for a, _ in pools if a not in failed}
    if tick_calls:
        ticks = await multicall.aggregate(tick_calls, block)
        for (address, tick), result in zip(tick_owners, ticks.results, strict=True):
            if address in failed:
                continue
            if not result.success or len(result.return_data) < 64:
                failed.add(address)
                answer.pop(address, None)
                continue
            answer[address][tick] = (
                _word(result.return_data, 0),
                _signed_word(result.return_data, 1),
            )
    return answer


@dataclass(frozen=True, slots=True)
class _PoolEvent:
    """One decoded log that changes a pool: ``kind`` is sync (V2 reserves), swap (V3 price,
    tick, liquidity after the swap), or liquidity (V3 Mint with +amount, Burn with -amount)."""

    block: int
    log_index: int
    pool: str
    kind: str
    values: tuple[int, ...]


def _decode_pool_events(
    logs: Sequence[Any], checksummed: Mapping[str, str] | None = None
) -> list[_PoolEvent]:
    """Sync / Swap / Mint / Burn logs in chain order. Raises ``ValueError`` on a log that does
    not decode (nothing is applied then). ``checksummed`` maps the lowercase addresses of the
    pools watched to their checksum form (hashing every log's address costs more than the
    rest); when given, logs of other contracts are left out."""
    events: list[_PoolEvent] = []
    known = checksummed or {}
    for entry_log in logs:
        try:
            raw_address = str(entry_log["address"])
            pool = known.get(raw_address.lower()) or ""
            if not pool:
                if checksummed is not None:
                    continue  # a contract the registry does not watch (a topic-only filter)
                pool = to_checksum_address(raw_address)
            topics = entry_log["topics"]
            topic0 = str(topics[0]).lower()
            data = bytes.fromhex(str(entry_log["data"])[2:])
            position = (int(str(entry_log["blockNumber"]), 16), int(str(entry_log["logIndex"]), 16))
            if topic0 == SYNC_TOPIC:
                values: tuple[int, ...] = (_word(data, 0), _word(data, 1))
                kind = "sync"
            elif topic0 == SWAP_TOPIC:
                values = (_word(data, 2), _signed_word(data, 4), _word(data, 3))
                kind = "swap"
            elif topic0 in (MINT_TOPIC, BURN_TOPIC):
                lower = int.from_bytes(bytes.fromhex(topics[2][2:]), "big", signed=True)
                upper = int.from_bytes(bytes.fromhex(topics[3][2:]), "big", signed=True)
                # Mint data: sender, amount, amount0, amount1; Burn data: amount, amount0, amount1
                amount = _word(data, 1) if topic0 == MINT_TOPIC else -_word(data, 0)
                values = (lower, upper, amount)
                kind = "liquidity"
            else:
                continue
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ValueError(f"undecodable pool log: {exc}") from None
        if len(data) < 32 * {"sync": 2, "swap": 5, "liquidity": 3}[kind]:
            raise ValueError("pool log data too short")
        events.append(_PoolEvent(*position, pool, kind, values))
    events.sort(key=lambda e: (e.block, e.log_index))
    return events


def _touched_ticks(logs: Sequence[Any]) -> tuple[dict[str, set[int]], str | None]:
    """``{pool: {tickLower, tickUpper, ...}}`` from the Mint/Burn logs of eth_getLogs."""
    touched: dict[str, set[int]] = {}
    for entry_log in logs:
        try:
            pool = to_checksum_address(entry_log["address"])
            topics = entry_log["topics"]
            # Mint and Burn both index tickLower and tickUpper as topics 2 and 3
            lower = int.from_bytes(bytes.fromhex(topics[2][2:]), "big", signed=True)
            upper = int.from_bytes(bytes.fromhex(topics[3][2:]), "big", signed=True)
        except (KeyError, IndexError, ValueError, TypeError):
            return {}, "eth_getLogs returned an undecodable log"
        touched.setdefault(pool, set()).update((lower, upper))
    return touched, None


_UNDO_BLOCKS = 128  # how deep a reorg can be undone by reloading the pools it touched


def _header_request(block: int) -> tuple[str, list[Any]]:
    return ("eth_getBlockByNumber", [hex(block), False])


def _header(reply: dict[str, Any]) -> tuple[str, str]:
    """``(hash, parentHash)`` of an eth_getBlockByNumber reply; ``ValueError`` if absent."""
    header = reply.get("result")
    if not isinstance(header, dict) or not header.get("hash"):
        raise ValueError(f"block header unavailable: {reply.get('error')}")
    return str(header["hash"]), str(header.get("parentHash", ""))


@dataclass(frozen=True, slots=True)
class PoolRef:
    """Where a pool lives: which DEX deployment, which protocol version."""

    address: str
    dex: str
    kind: str  # "v2" | "v3"
    factory: str = ""


# --- the registry ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """What one ``refresh`` did. ``rpc_calls`` are JSON-RPC calls, ``http_requests`` the HTTP
    requests they travelled in (both as counted by the RPC client when it is an ``RpcClient``)."""

    block: int
    updated: int
    stale: frozenset[str]
    ticks_reloaded: frozenset[str]
    rpc_calls: int
    http_requests: int | None
    duration_s: float
    error: str | None = None
    # pools whose event-advanced state differed from the chain at the spot check (reloaded)
    drifted: frozenset[str] = frozenset()

    @property
    def ok(self) -> bool:
        return self.error is None and not self.stale


@dataclass
class _Entry:
    ref: PoolRef
    token0: str
    token1: str
    fee_pips: int
    tick_spacing: int = 0
    state: Pool | None = None
    error: str | None = None
    # V3 only: tick -> liquidity_net as last read; None until the full tick state is loaded
    ticks: dict[int, int] | None = None
    gross: dict[int, int] | None = None  # tick -> liquidity_gross, kept with ``ticks``
    ticks_tuple: tuple[tuple[int, int], ...] = ()
    template: V3Pool | None = None  # the last V3Pool built, reused while ticks are unchanged
    # V3 only: the tickBitmap words ``ticks`` covers (every initialized tick in them is there)
    words: range | None = None
    # owned by the background first load (``load_pending``) until it has a state: refreshes
    # leave it alone, and it is reported as loading, not stale
    pending: bool = False
    load_failures: int = 0
    retry_at: float = 0.0  # monotonic seconds: when a failed first load is tried again


def _in_words(entry: _Entry, tick: int) -> bool:
    """Whether ``tick`` lies in the bitmap words loaded for ``entry`` (all, before a window)."""
    return entry.words is None or ((tick // entry.tick_spacing) >> 8) in entry.words


def _state_calls(entry: _Entry) -> list[Call]:
    """The reads of a pool's price state: V2 ``getReserves``; V3 ``slot0`` and ``liquidity``."""
    if entry.ref.kind == "v2":
        return [Call(entry.ref.address, GET_RESERVES)]
    return [Call(entry.ref.address, SLOT0), Call(entry.ref.address, LIQUIDITY)]


def _reserves_state(entry: _Entry, reserves: bytes, block: int) -> V2Pool:
    """The V2 pool of ``entry`` with the ``getReserves`` answer ``reserves``."""
    r0, r1 = _word(reserves, 0), _word(reserves, 1)
    return V2Pool(entry.ref.address, entry.token0, entry.token1, r0, r1, entry.fee_pips, block)


def _entry_range(entry: _Entry) -> tuple[int, int] | None:
    return None if entry.words is None else loaded_tick_range(entry.words, entry.tick_spacing)


def _template_tick(entry: _Entry) -> int:
    assert entry.template is not None
    return entry.template.tick


@dataclass
class PoolRegistry:
    """The pools the agent watches and their latest exact states.

    ``rpc`` is an ``RpcClient`` (counters are reported per refresh) or an ``AsyncWeb3``.
    ``v2_factories`` maps a DEX name (e.g. ``"uniswap_v2"``) to its factory address.
    """

    rpc: Any
    v2_factories: Mapping[str, str] = field(default_factory=dict)
    v3_factory: str | None = None
    v3_dex: str = "uniswap_v3"
    v2_fee_pips: Mapping[str, int] = field(default_factory=dict)
    fee_tiers: Sequence[int] = FEE_TIERS_PIPS
    multicall: Multicall | None = None
    # the provider's caps (the RpcClient splits batches itself; this plans log ranges)
    limits: ProviderLimits = UNLIMITED
    # after the first load, advance pools by their Sync/Swap/Mint/Burn logs (one eth_getLogs
    # a block) instead of re-reading every pool; ``spot_check_size`` pools a block, in
    # rotation, are read too and reloaded when they differ (``drift_count``)
    event_driven: bool = False
    spot_check_size: int = 16
    # above this many pools the event logs are asked for by topic alone and other contracts'
    # logs dropped here: a filter naming 10,000 addresses is a 440 kB request the node scans
    # every block, while a block's Sync/Swap/Mint/Burn logs of a whole chain are a few hundred
    log_address_filter_max_pools: int = 1_000
    # V3: load only the tickBitmap words within this many percent of the price (None: every
    # word); the window follows the price, and a quote past it is refused (``TicksNotLoaded``)
    tick_window_pct: float | None = None
    # the first load of a pool is left to ``load_pending`` (run in the background) rather than
    # done inside ``refresh``: refreshes bring only loaded pools forward
    background_load: bool = False

    def __post_init__(self) -> None:
        self._batch = _batcher(self.rpc)
        if self.multicall is None:
            self.multicall = Multicall(self._batch)
        self._entries: dict[str, _Entry] = {}
        self._checksummed: dict[str, str] = {}  # lowercase pool address -> checksum form
        self._logs_synced_to: int | None = None
        self._refresh_calls: tuple[Call, ...] = ()
        self._refresh_layout: list[tuple[_Entry, int]] = []
        self.last_block: int | None = None
        self.drift_count = 0
        self.event_refreshes = 0  # refreshes that advanced the pools by their logs
        self.reorgs_handled = 0
        # the last _UNDO_BLOCKS blocks: their hashes, and the pools their logs changed
        self._block_hashes: dict[int, str] = {}
        self._touched_by_block: dict[int, set[str]] = {}
        self._spot_cursor = 0
        self._drifted: frozenset[str] = frozenset()
        # a refresh and a round of first loads never interleave: a round reads at the block
        # the loaded pools are at, so the next refresh brings old and new pools forward alike
        self._lock = asyncio.Lock()
        self._pending_added = asyncio.Event()
        # discovered pools left out (too little liquidity), kept to be measured again
        self._skipped: dict[str, _Entry] = {}

    # --- what consumers read -----------------------------------------------------------------

    @property
    def pools(self) -> dict[str, Pool]:
        """Latest state of every pool that has one (stale pools keep their last good state)."""
        return {a: e.state for a, e in self._entries.items() if e.state is not None}

    @property
    def pool_refs(self) -> dict[str, PoolRef]:
        return {a: e.ref for a, e in self._entries.items()}

    @property
    def stale_pools(self) -> frozenset[str]:
        """Pools whose latest read failed (or that were never read; not those still loading)."""
        return frozenset(
            a for a, e in self._entries.items() if e.error is not None and not e.pending
        )

    @property
    def loading_pools(self) -> frozenset[str]:
        """Pools the background first load has not loaded yet (including failed ones waiting
        for their retry)."""
        return frozenset(a for a, e in self._entries.items() if e.pending)

    def errors(self) -> dict[str, str]:
        """``{pool: why its last read failed}`` for the stale pools."""
        return {
            a: e.error for a, e in self._entries.items() if e.error is not None and not e.pending
        }

    def get(self, address: str) -> Pool | None:
        entry = self._entries.get(to_checksum_address(address))
        return entry.state if entry else None

    # --- membership --------------------------------------------------------------------------

    def add_v2_pool(
        self,
        address: str,
        token0: str,
        token1: str,
        *,
        dex: str,
        factory: str = "",
        fee_pips: int | None = None,
    ) -> None:
        address = to_checksum_address(address)
        fee = fee_pips if fee_pips is not None else self.v2_fee_pips.get(dex, DEFAULT_FEE_PIPS)
        self._entries[address] = _Entry(
            PoolRef(address, dex, "v2", factory),
            to_checksum_address(token0),
            to_checksum_address(token1),
            fee,
            error="never read",
            pending=self.background_load,
        )
        self._checksummed[address.lower()] = address
        self._refresh_calls = ()
        self._pending_added.set()

    def add_v3_pool(
        self,
        address: str,
        token0: str,
        token1: str,
        fee_pips: int,
        tick_spacing: int | None = None,
        *,
        dex: str | None = None,
        factory: str = "",
    ) -> None:
        address = to_checksum_address(address)
        spacing = tick_spacing if tick_spacing is not None else TICK_SPACING_BY_FEE[fee_pips]
        self._entries[address] = _Entry(
            PoolRef(address, dex or self.v3_dex, "v3", factory or self.v3_factory or ""),
            to_checksum_address(token0),
            to_checksum_address(token1),
            fee_pips,
            spacing,
            error="never read",
            pending=self.background_load,
        )
        self._checksummed[address.lower()] = address
        self._refresh_calls = ()
        self._pending_added.set()

    async def discover(self, tokens: Iterable[str]) -> int:
        """Find every pool between any two of ``tokens`` through the factories (``getPair`` on
        each V2 factory, ``getPool`` for each fee tier) in one multicall; returns how many new
        pools were added. Raises ``PoolReadError`` if the factory reads fail."""
        assert self.multicall is not None
        addresses: list[str] = sorted(
            {to_checksum_address(t) for t in tokens}, key=lambda a: int(a, 16)
        )
        calls: list[Call] = []
        keys: list[tuple[str, str, str, tuple[str, str], int]] = []
        for token0, token1 in itertools.combinations(addresses, 2):
            for dex, factory in self.v2_factories.items():
                calls.append(
                    Call(factory, GET_PAIR + encode(["address", "address"], [token0, token1]))
                )
                keys.append(("v2", dex, factory, (token0, token1), 0))
            if self.v3_factory:
                for fee in self.fee_tiers:
                    data = GET_POOL + encode(
                        ["address", "address", "uint24"], [token0, token1, fee]
                    )
                    calls.append(Call(self.v3_factory, data))
                    keys.append(("v3", self.v3_dex, self.v3_factory, (token0, token1), fee))
        answer = await self.multicall.aggregate(calls)
        added = 0
        for (kind, dex, factory, pair, fee), result in zip(keys, answer.results, strict=True):
            try:
                pool = _address(_need(result, 1))
            except ValueError as exc:
                raise PoolReadError(f"{dex} factory lookup failed: {exc}") from None
            if int(pool, 16) == 0 or pool in self._entries or pool in self._skipped:
                continue
            token0, token1 = pair
            if kind == "v2":
                self.add_v2_pool(pool, token0, token1, dex=dex, factory=factory)
            else:
                self.add_v3_pool(pool, token0, token1, fee, dex=dex, factory=factory)
            added += 1
        return added

    @property
    def skipped_pools(self) -> frozenset[str]:
        """Discovered pools not watched (``skip``), e.g. for too little liquidity."""
        return frozenset(self._skipped)

    async def skip(self, addresses: Iterable[str]) -> None:
        """Stop watching ``addresses`` (no reads, no state); ``unskip`` brings them back."""
        async with self._lock:  # never in the middle of a refresh or a round of first loads
            for address in addresses:
                entry = self._entries.pop(to_checksum_address(address), None)
                if entry is None:
                    continue
                for touched in self._touched_by_block.values():
                    touched.discard(entry.ref.address)
                self._skipped[entry.ref.address] = _Entry(
                    entry.ref, entry.token0, entry.token1, entry.fee_pips, entry.tick_spacing
                )
            self._refresh_calls = ()

    def unskip(self, addresses: Iterable[str]) -> None:
        """Watch skipped ``addresses`` again: they are loaded like newly discovered pools."""
        for address in addresses:
            entry = self._skipped.pop(to_checksum_address(address), None)
            if entry is None:
                continue
            entry.error, entry.pending = "never read", self.background_load
            self._entries[entry.ref.address] = entry
        self._refresh_calls = ()
        self._pending_added.set()

    async def read_heads(self, addresses: Iterable[str]) -> dict[str, Pool]:
        """Price and depth of ``addresses`` (watched or skipped) at the latest block, in one
        multicall: V2 reserves; V3 slot0 and liquidity with no tick data (any quote on them is
        refused). For measuring liquidity, not for trading. Pools whose read failed are left
        out."""
        assert self.multicall is not None
        entries = [
            e for a in addresses if (e := self._entries.get(a) or self._skipped.get(a)) is not None
        ]
        calls = [_state_calls(e) for e in entries]
        answer = await self.multicall.aggregate([c for pool_calls in calls for c in pool_calls])
        block = answer.block_number or 0
        results = iter(answer.results)
        heads: dict[str, Pool] = {}
        for entry, pool_calls in zip(entries, calls, strict=True):
            replies = [next(results) for _ in pool_calls]
            try:
                if entry.ref.kind == "v2":
                    heads[entry.ref.address] = _reserves_state(entry, _need(replies[0], 2), block)
                    continue
                slot0 = _need(replies[0], 2)
                liquidity = _word(_need(replies[1], 1), 0)
            except ValueError:
                continue
            tick = _signed_word(slot0, 1)
            heads[entry.ref.address] = V3Pool(
                entry.ref.address,
                entry.token0,
                entry.token1,
                entry.fee_pips,
                entry.tick_spacing,
                _word(slot0, 0),
                tick,
                liquidity,
                (),
                block,
                loaded_tick_range=(tick + 1, tick - 1),  # empty: every quote is refused
            )
        return heads

    # --- the first load, in the background ----------------------------------------------------

    async def load_pending(
        self,
        *,
        concurrency: int = 4,
        batch_pools: int = 1_000,
        retry_initial_s: float = 5.0,
        retry_max_s: float = 300.0,
        progress: Callable[[int, int], None] | None = None,
        progress_interval_s: float = 10.0,
        forever: bool = True,
        rounds: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Load the pools still pending (``background_load``), ``batch_pools`` per batch with
        ``concurrency`` batches in flight, each pool usable as soon as its batch is in.

        A round of batches reads at the block the loaded pools are at (refreshes wait for it),
        so the next refresh brings every pool forward alike. A pool whose load failed is tried
        again after a backoff (doubling from ``retry_initial_s`` up to ``retry_max_s``), never
        by a refresh. The RPC client retries a 429 with backoff and paces requests to the
        provider's rate; a batch that still fails as a whole (the provider refusing us) pauses
        the rounds too, doubling like the retries.
        ``progress(loaded, total)`` is called after each round and logged every
        ``progress_interval_s``. With ``forever`` it then waits for pools added later (the
        discovery recheck); otherwise it returns once nothing is due (or after ``rounds``).
        """
        last_logged = clock()
        pause_s = retry_initial_s
        while True:
            now = clock()
            due = [e for e in self._entries.values() if e.pending and e.retry_at <= now]
            if not due:
                if not forever:
                    return
                waiting = [e.retry_at for e in self._entries.values() if e.pending]
                self._pending_added.clear()
                timeout = max(0.0, min(waiting) - now) if waiting else None
                with contextlib.suppress(TimeoutError):  # a retry is due
                    await asyncio.wait_for(self._pending_added.wait(), timeout)
                continue
            if rounds is not None:
                if rounds <= 0:
                    return
                rounds -= 1
            round_pools = due[: concurrency * batch_pools]
            refused = await self._load_round(
                round_pools, batch_pools, clock, retry_initial_s, retry_max_s
            )
            loaded = sum(1 for e in self._entries.values() if not e.pending)
            total = len(self._entries)
            if progress is not None:
                progress(loaded, total)
            if clock() - last_logged >= progress_interval_s or loaded == total:
                log.info("pools loaded %s", progress_bar(loaded, total))
                last_logged = clock()
            if refused:
                log.warning("first load: a whole batch failed, pausing %.1fs", pause_s)
                await asyncio.sleep(pause_s)
                pause_s = min(pause_s * 2, retry_max_s)
            else:
                pause_s = retry_initial_s

    async def _load_round(
        self,
        entries: Sequence[_Entry],
        batch_pools: int,
        clock: Callable[[], float],
        retry_initial_s: float,
        retry_max_s: float,
    ) -> bool:
        """Load ``entries`` in batches at the registry's block; True when a whole batch failed
        (every read refused: the provider's rate limit or an outage)."""
        async with self._lock:
            # a pool skipped while this round waited for the lock is not loaded
            entries = [e for e in entries if self._entries.get(e.ref.address) is e]
            batches = [entries[i : i + batch_pools] for i in range(0, len(entries), batch_pools)]
            block = self.last_block
            if block is None:
                block = int(await self._batch_head(), 16)
            outcomes: list[tuple[set[str], AgentError | None]] = [(set(), None)] * len(batches)

            async def load(index: int, batch: Sequence[_Entry]) -> None:
                try:
                    loaded = await self._reload_pools({e.ref.address for e in batch}, block)
                    outcomes[index] = (loaded, None)
                except AgentError as exc:
                    outcomes[index] = (set(), exc)

            async with asyncio.TaskGroup() as group:
                for index, batch in enumerate(batches):
                    group.create_task(load(index, batch))
            if self.last_block is None:
                self.last_block = self._logs_synced_to = block
            self._refresh_calls = ()
            # read at ``block``: a reorg replacing it reloads them like the pools it changed
            self._touched_by_block.setdefault(block, set()).update(
                *(loaded for loaded, _failure in outcomes)
            )
        refused = False
        now = clock()
        for batch, (loaded, failure) in zip(batches, outcomes, strict=True):
            refused |= not loaded
            for entry in batch:
                if entry.ref.address in loaded:
                    entry.pending, entry.load_failures, entry.retry_at = False, 0, 0.0
                    entry.error = None
                    continue
                entry.load_failures += 1
                delay = min(retry_initial_s * 2 ** (entry.load_failures - 1), retry_max_s)
                entry.retry_at = now + delay
                log.warning(
                    "first load of pool %s failed (%s): retrying in %.0fs",
                    entry.ref.address,
                    f"{type(failure).__name__}: {failure}" if failure else entry.error,
                    delay,
                )
        return refused

    async def _batch_head(self) -> str:
        reply = (await self._batch.batch([("eth_blockNumber", [])]))[0]
        if not isinstance(reply.get("result"), str):
            raise PoolReadError(f"eth_blockNumber failed: {reply.get('error')}")
        return str(reply["result"])

    # --- refresh -----------------------------------------------------------------------------

    def _build_refresh_calls(self) -> None:
        calls: list[Call] = []
        layout: list[tuple[_Entry, int]] = []
        for address, entry in self._entries.items():
            if entry.pending:
                continue
            layout.append((entry, len(calls)))
            if entry.ref.kind == "v2":
                calls.append(Call(address, GET_RESERVES))
            else:
                calls.append(Call(address, SLOT0))
                calls.append(Call(address, LIQUIDITY))
        self._refresh_calls = tuple(calls)
        self._refresh_layout = layout

    async def refresh(self, block_number: int) -> RefreshResult:
        """Bring every pool to ``block_number`` (those loaded, with ``background_load``).
        Never raises for RPC or decoding trouble."""
        async with self._lock:
            if self._entries and all(e.pending for e in self._entries.values()):
                # nothing loaded yet: the first loads will read at this block
                self.last_block = self._logs_synced_to = block_number
                return RefreshResult(block_number, 0, frozenset(), frozenset(), 0, 0, 0.0)
            return await self._refresh_locked(block_number)

    async def _refresh_locked(self, block_number: int) -> RefreshResult:
        started = time.perf_counter()
        calls_before, requests_before = self._counters()
        self._drifted = frozenset()
        try:
            by_events = (
                await self._refresh_by_events(block_number) if self._events_ready() else None
            )
            result = by_events if by_events is not None else await self._refresh(block_number)
            if self.tick_window_pct is not None and result[2] is None:
                extended = await self._extend_windows(block_number)
                result = (result[0], result[1] | extended, result[2])
        except Exception as exc:  # one bad answer must never kill the engine's refresh loop
            log.exception("pool refresh at block %s failed", block_number)
            for entry in self._entries.values():
                entry.error = entry.error or f"refresh failed: {type(exc).__name__}"
            result = (0, frozenset(), f"{type(exc).__name__}: {exc}")
        updated, reloaded, error = result
        calls_after, requests_after = self._counters()
        return RefreshResult(
            block=block_number,
            updated=updated,
            stale=self.stale_pools,
            ticks_reloaded=reloaded,
            rpc_calls=calls_after - calls_before,
            http_requests=(
                requests_after - requests_before
                if requests_after is not None and requests_before is not None
                else None
            ),
            duration_s=time.perf_counter() - started,
            error=error,
            drifted=self._drifted,
        )

    def _counters(self) -> tuple[int, int | None]:
        calls = getattr(self.rpc, "call_count", None)
        requests = getattr(self.rpc, "request_count", None)
        return (calls if isinstance(calls, int) else 0), (
            requests if isinstance(requests, int) else None
        )

    async def _refresh(self, block: int) -> tuple[int, frozenset[str], str | None]:
        assert self.multicall is not None
        if not self._refresh_calls:
            self._build_refresh_calls()
        v3_addresses = [a for a, e in self._entries.items() if e.ref.kind == "v3" and not e.pending]
        synced = self._logs_synced_to
        want_logs = bool(v3_addresses) and synced is not None and synced < block

        requests = self.multicall.build_requests(self._refresh_calls, block, cache_encoding=True)
        chunk_count = len(requests)
        log_filter: dict[str, Any] = {
            "address": v3_addresses,
            "topics": [[MINT_TOPIC, BURN_TOPIC]],
        }
        pieces = plan_log_ranges(synced + 1, block, self.limits) if synced is not None else []
        if want_logs:
            requests.extend(log_request(log_filter, piece) for piece in pieces)
        try:
            replies = await self._batch.batch(requests)
        except AgentError as exc:
            failure = f"state read failed at block {block}: {type(exc).__name__}: {exc}"
            for entry in self._entries.values():
                entry.error = failure
            return 0, frozenset(), failure

        error: str | None = None
        touched: dict[str, set[int]] = {}
        logs_ok = True
        if want_logs:
            assert synced is not None
            try:
                # a piece the provider refused as too large is split and asked again
                logs = await get_logs(
                    self._batch,
                    log_filter,
                    synced + 1,
                    block,
                    self.limits,
                    answered=dict(zip(pieces, replies[chunk_count:], strict=True)),
                )
                touched, error = _touched_ticks(logs)
            except AgentError as exc:
                error = f"eth_getLogs failed: {type(exc).__name__}: {exc}"
            logs_ok = error is None
        _, results = self.multicall.decode_replies(self._refresh_calls, replies[:chunk_count])

        updated: set[str] = set()
        fresh_v3: list[_Entry] = []
        for entry, index in self._refresh_layout:
            address = entry.ref.address
            try:
                if entry.ref.kind == "v2":
                    entry.state = _reserves_state(entry, _need(results[index], 2), block)
                    entry.error = None
                    updated.add(address)
                    continue
                slot0 = _need(results[index], 2)
                liquidity = _word(_need(results[index + 1], 1), 0)
            except ValueError as exc:
                entry.error = f"read failed at block {block}: {exc}"
                if address in touched:
                    entry.ticks = None  # its tick changes were not applied: reload them all
                continue
            entry.template = self._v3_state(
                entry, _word(slot0, 0), _signed_word(slot0, 1), liquidity, block
            )
            fresh_v3.append(entry)

        # ticks named by Mint/Burn logs (pools already loaded), then first or full loads
        touched = self._within_windows(touched)
        to_reload = {
            e.ref.address: touched[e.ref.address]
            for e in fresh_v3
            if e.ref.address in touched and e.ticks is not None
        }
        reloaded = await self._reload_touched_ticks(to_reload, block)
        full = [e for e in fresh_v3 if e.ticks is None]
        if full:
            windows = {e.ref.address: self._window(e, _template_tick(e)) for e in full}
            loaded = await load_v3_tick_tables(
                self.multicall, [(e.ref.address, e.tick_spacing) for e in full], block, windows
            )
            for entry in full:
                table = loaded.get(entry.ref.address)
                if table is None:
                    entry.error = f"tick state read failed at block {block}"
                    continue
                entry.ticks = {tick: net for tick, (_gross, net) in table.items()}
                entry.gross = {tick: gross for tick, (gross, _net) in table.items()}
                entry.words = windows[entry.ref.address]
                self._install_ticks(entry, block)
                reloaded.add(entry.ref.address)
        for entry in fresh_v3:
            address = entry.ref.address
            if address in reloaded:
                updated.add(address)
            elif entry.ticks is not None and address not in touched:
                if logs_ok:
                    assert entry.template is not None
                    entry.state = entry.template
                    entry.error = None
                    updated.add(address)
                else:
                    # ticks may have changed in blocks whose logs could not be read
                    entry.error = error
        if logs_ok:
            self._logs_synced_to = block
        self.last_block = block
        return len(updated), frozenset(reloaded), error

    # --- event-driven refresh -----------------------------------------------------------------

    def _events_ready(self) -> bool:
        """Events can advance the state only from a complete, exact one: every pool loaded
        (V3 with its whole tick table, gross included) and the logs synced."""
        if not self.event_driven or self._logs_synced_to is None or not self._entries:
            return False
        return all(
            e.error is None
            and e.state is not None
            and (e.ref.kind == "v2" or (e.ticks is not None and e.gross is not None))
            for e in self._entries.values()
            if not e.pending
        )

    def _spot_sample(self) -> list[_Entry]:
        entries = [e for e in self._entries.values() if not e.pending]
        size = min(self.spot_check_size, len(entries))
        if size <= 0:
            return []
        start = self._spot_cursor % len(entries)
        self._spot_cursor = start + size
        return (entries + entries)[start : start + size]

    async def _refresh_by_events(self, block: int) -> tuple[int, frozenset[str], str | None] | None:
        """Advance every pool from ``synced + 1`` to ``block`` by its logs, in one batch with the
        spot check's reads. None when the logs could not be read or decoded: the caller then
        re-reads every pool (nothing was changed)."""
        assert self.multicall is not None
        synced = self._logs_synced_to
        assert synced is not None
        if block < synced:
            # an older head: tick tables hold later Mints/Burns that a re-read at ``block``
            # would not undo, and the logs after it would be applied twice
            self._forget_tick_tables()
            return None
        if block == synced:
            return None  # the same head again: a re-read says the same
        log_filter: dict[str, Any] = {"topics": [[SYNC_TOPIC, SWAP_TOPIC, MINT_TOPIC, BURN_TOPIC]]}
        if len(self._entries) <= self.log_address_filter_max_pools:
            log_filter["address"] = [a for a, e in self._entries.items() if not e.pending]
        pieces = plan_log_ranges(synced + 1, block, self.limits)
        sample = self._spot_sample()
        spot_calls = [call for entry in sample for call in _state_calls(entry)]
        requests = self.multicall.build_requests(spot_calls, block) if spot_calls else []
        chunk_count = len(requests)
        requests.extend(log_request(log_filter, piece) for piece in pieces)
        # the headers of the last block applied and of the new one: a reorg shows as a
        # different hash for the last one (same HTTP request)
        requests += [_header_request(synced), _header_request(block)]
        try:
            replies = await self._batch.batch(requests)
            synced_header, head_header = (_header(r) for r in replies[-2:])
            # the first load's block is known from here on: a reorg right after it is seen
            self._block_hashes.setdefault(synced, synced_header[0])
            reorged: set[str] = set()
            first = synced + 1
            if self._block_hashes.get(synced, synced_header[0]) != synced_header[0]:
                ancestor = await self._common_ancestor(synced)
                if ancestor is None:
                    self.reorgs_handled += 1
                    log.warning("reorg deeper than %d blocks: reloading every pool", _UNDO_BLOCKS)
                    self._forget_tick_tables()
                    return None
                reorged = set().union(
                    *(self._touched_by_block.get(b, set()) for b in range(ancestor + 1, synced + 1))
                )
                log.warning(
                    "reorg: blocks %d..%d replaced; reloading %d pool(s) they had changed",
                    ancestor + 1,
                    synced,
                    len(reorged),
                )
                first = ancestor + 1
            logs = await get_logs(
                self._batch,
                log_filter,
                synced + 1,
                block,
                self.limits,
                answered=dict(zip(pieces, replies[chunk_count:-2], strict=True)),
            )
            if first <= synced:  # the new blocks that replaced the reorged ones
                logs = (await get_logs(self._batch, log_filter, first, synced, self.limits)) + logs
            events = [
                e
                for e in _decode_pool_events(logs, self._checksummed)
                if not self._entries[e.pool].pending  # a topic-only filter brings theirs too
            ]
        except (AgentError, ValueError) as exc:
            log.warning("pool logs to block %d unreadable (%s): re-reading every pool", block, exc)
            return None
        for height in range(first, block + 1):
            self._touched_by_block.pop(height, None)
        for event in events:
            self._touched_by_block.setdefault(event.block, set()).add(event.pool)
        self._block_hashes[block] = head_header[0]
        for height in [h for h in self._block_hashes if h <= block - _UNDO_BLOCKS or h > block]:
            self._block_hashes.pop(height, None)
        for height in [h for h in self._touched_by_block if h <= block - _UNDO_BLOCKS]:
            self._touched_by_block.pop(height, None)
        suspect = self._apply_events([e for e in events if e.pool not in reorged], block)
        suspect |= reorged
        spot: list[CallResult] = []
        if spot_calls:
            _, spot = self.multicall.decode_replies(spot_calls, replies[:chunk_count])
        drifted = (suspect | self._spot_check(sample, spot, block)) - reorged
        reloaded = await self._reload_pools(drifted | reorged, block)
        self.drift_count += len(drifted)
        self.reorgs_handled += 1 if first <= synced else 0
        self.event_refreshes += 1
        self._drifted = frozenset(drifted)
        self._logs_synced_to = block
        self.last_block = block
        return len(self._entries), frozenset(reloaded), None

    async def _common_ancestor(self, below: int) -> int | None:
        """The highest block at or under ``below`` whose hash is still the one recorded, or
        None when no recorded block is left on the chain."""
        heights = sorted((h for h in self._block_hashes if h <= below), reverse=True)
        if not heights:
            return None
        replies = await self._batch.batch([_header_request(h) for h in heights])
        for height, reply in zip(heights, replies, strict=True):
            if _header(reply)[0] == self._block_hashes[height]:
                return height
        return None

    def _forget_tick_tables(self) -> None:
        """Every V3 pool is read in full again by the next re-read."""
        for entry in self._entries.values():
            if entry.ref.kind == "v3":
                entry.ticks = None
                entry.gross = None
        self._block_hashes.clear()
        self._touched_by_block.clear()

    def _apply_events(self, events: Sequence[_PoolEvent], block: int) -> set[str]:
        """Apply ``events`` in order, then give every pool its state at ``block``. Returns the
        pools whose events made no sense against the state held (they drifted)."""
        reserves: dict[str, tuple[int, int]] = {}
        prices: dict[str, list[int]] = {}  # V3: [sqrt_price_x96, tick, liquidity]
        tables_changed: set[str] = set()
        suspect: set[str] = set()
        for event in events:
            entry = self._entries.get(event.pool)
            if entry is None or entry.pending or event.pool in suspect:
                continue
            if event.kind == "sync" and entry.ref.kind == "v2":
                r0, r1 = event.values
                reserves[event.pool] = (r0, r1)
                continue
            state = entry.state
            if entry.ref.kind != "v3" or not isinstance(state, V3Pool):
                suspect.add(event.pool)
                continue
            price = prices.setdefault(
                event.pool, [state.sqrt_price_x96, state.tick, state.liquidity]
            )
            if event.kind == "swap":
                price[:] = list(event.values)
                continue
            lower, upper, amount = event.values
            if amount == 0:
                continue  # a Burn of 0 collects fees: no liquidity moves
            gross, net = entry.gross, entry.ticks
            assert gross is not None and net is not None
            # Pool.sol _updatePosition: both ticks' gross and net, and the active liquidity
            # when the current tick is inside [lower, upper)
            for tick, net_delta in ((lower, amount), (upper, -amount)):
                if not _in_words(entry, tick):
                    continue  # not loaded: read with its word when the window reaches it
                new_gross = gross.get(tick, 0) + amount
                if new_gross < 0:
                    suspect.add(event.pool)
                elif new_gross == 0:
                    gross.pop(tick, None)
                    net.pop(tick, None)
                else:
                    gross[tick] = new_gross
                    net[tick] = net.get(tick, 0) + net_delta
            if lower <= price[1] < upper:
                price[2] += amount
                if price[2] < 0:
                    suspect.add(event.pool)
            tables_changed.add(event.pool)
        # only the pools the events changed get a new state (``block``: this one); the others
        # keep theirs, still exact at ``block`` (see ``PoolRegistry``: the block of a state)
        for address, (r0, r1) in reserves.items():
            entry = self._entries[address]
            entry.state = V2Pool(address, entry.token0, entry.token1, r0, r1, entry.fee_pips, block)
        for address, (sqrt_price, tick, liquidity) in prices.items():
            entry = self._entries[address]
            if address in tables_changed:
                assert entry.ticks is not None
                entry.ticks_tuple = tuple(sorted(entry.ticks.items()))
            entry.template = self._v3_state(entry, sqrt_price, tick, liquidity, block)
            entry.state = entry.template
        return suspect

    def _spot_check(
        self, sample: Sequence[_Entry], results: Sequence[CallResult], block: int
    ) -> set[str]:
        """Pools of ``sample`` whose state differs from the chain's answer (a failed read
        judges nothing: the pool keeps its event-advanced state)."""
        drifted: set[str] = set()
        index = 0
        for entry in sample:
            state = entry.state
            try:
                if entry.ref.kind == "v2":
                    data = _need(results[index], 2)
                    index += 1
                    assert isinstance(state, V2Pool)
                    if (state.reserve0, state.reserve1) != (_word(data, 0), _word(data, 1)):
                        drifted.add(entry.ref.address)
                    continue
                slot0 = _need(results[index], 2)
                liquidity = _word(_need(results[index + 1], 1), 0)
                index += 2
            except ValueError:
                index += 1 if entry.ref.kind == "v2" else 2
                continue
            assert isinstance(state, V3Pool)
            chain_view = (_word(slot0, 0), _signed_word(slot0, 1), liquidity)
            if (state.sqrt_price_x96, state.tick, state.liquidity) != chain_view:
                drifted.add(entry.ref.address)
        if drifted:
            log.warning(
                "%d pool(s) drifted from the chain at block %d: %s (reloading)",
                len(drifted),
                block,
                ", ".join(sorted(drifted)),
            )
        return drifted

    async def _reload_pools(self, addresses: set[str], block: int) -> set[str]:
        """Read ``addresses`` again in full at ``block`` (V3: the whole tick table too)."""
        assert self.multicall is not None
        if not addresses:
            return set()
        entries = [self._entries[a] for a in sorted(addresses)]
        calls = [call for entry in entries for call in _state_calls(entry)]
        answer = await self.multicall.aggregate(calls, block)
        v3 = [e for e in entries if e.ref.kind == "v3"]
        windows = self._reload_windows(entries, answer.results)
        tables = (
            await load_v3_tick_tables(
                self.multicall, [(e.ref.address, e.tick_spacing) for e in v3], block, windows
            )
            if v3
            else {}
        )
        reloaded: set[str] = set()
        index = 0
        for entry in entries:
            address = entry.ref.address
            try:
                if entry.ref.kind == "v2":
                    entry.state = _reserves_state(entry, _need(answer.results[index], 2), block)
                    index += 1
                    reloaded.add(address)
                    continue
                slot0 = _need(answer.results[index], 2)
                liquidity = _word(_need(answer.results[index + 1], 1), 0)
                index += 2
            except ValueError as exc:
                index += 1 if entry.ref.kind == "v2" else 2
                entry.error = f"reload after drift failed at block {block}: {exc}"
                entry.ticks = None
                continue
            table = tables.get(address)
            if table is None:
                entry.error = f"tick state read failed at block {block}"
                entry.ticks = None
                continue
            entry.ticks = {tick: net for tick, (_gross, net) in table.items()}
            entry.gross = {tick: gross for tick, (gross, _net) in table.items()}
            entry.words = windows.get(address, entry.words)
            entry.ticks_tuple = tuple(sorted(entry.ticks.items()))
            entry.template = self._v3_state(
                entry, _word(slot0, 0), _signed_word(slot0, 1), liquidity, block
            )
            entry.state = entry.template
            entry.error = None
            reloaded.add(address)
        return reloaded

    # --- the V3 tick window ----------------------------------------------------------------

    def _window(self, entry: _Entry, tick: int) -> range:
        """The words to hold for ``entry`` at ``tick``: the window around it joined with the
        words already held (one contiguous range), or every word without a window."""
        if self.tick_window_pct is None:
            return tick_bitmap_word_range(entry.tick_spacing)
        wanted = tick_window_words(tick, entry.tick_spacing, self.tick_window_pct)
        held = entry.words
        if held is None:
            return wanted
        return range(min(wanted.start, held.start), max(wanted.stop, held.stop))

    def _within_windows(self, touched: dict[str, set[int]]) -> dict[str, set[int]]:
        """``touched`` without the ticks outside each pool's loaded words (nothing is known
        there; those ticks are read with their word if the window ever reaches it)."""
        kept: dict[str, set[int]] = {}
        for address, ticks in touched.items():
            entry = self._entries.get(address)
            inside = {t for t in ticks if entry is None or _in_words(entry, t)}
            if inside:
                kept[address] = inside
        return kept

    def _reload_windows(
        self, entries: Sequence[_Entry], results: Sequence[CallResult]
    ) -> dict[str, range]:
        """The words to load for the V3 ``entries`` of a reload, from the slot0 answers in
        ``results`` (laid out as ``_reload_pools`` asks: V2 one call, V3 two)."""
        windows: dict[str, range] = {}
        index = 0
        for entry in entries:
            if entry.ref.kind == "v2":
                index += 1
                continue
            result = results[index]
            index += 2
            if result.success and len(result.return_data) >= 64:
                windows[entry.ref.address] = self._window(
                    entry, _signed_word(result.return_data, 1)
                )
        return windows

    async def _extend_windows(self, block: int) -> set[str]:
        """Load the bitmap words the windows now need: where the price moved toward an edge
        of its pool's loaded words, or where a quote was refused for leaving them (one more
        window's worth that way). Returns the pools extended; a failed read is tried again
        at the next refresh."""
        assert self.multicall is not None and self.tick_window_pct is not None
        grown: dict[str, range] = {}
        missing: dict[str, list[int]] = {}  # the words of ``grown`` not held yet
        below, above = _window_offsets(self.tick_window_pct)
        for address, entry in self._entries.items():
            # a good state is exact at ``block`` whatever block it was last changed at
            state, held = entry.state, entry.words
            if (
                not isinstance(state, V3Pool)
                or entry.ticks is None
                or held is None
                or entry.error is not None
            ):
                continue
            spacing = entry.tick_spacing
            edge_low, edge_high = (held.start << 8) * spacing, (held.stop << 8) * spacing
            if (
                edge_low - below <= state.tick < edge_high - max(above, spacing)
                and not state.wanted_ticks()
            ):
                continue  # the window around the price is held, no quote asked for more
            words = self._window(entry, state.tick)
            wanted = state.wanted_ticks()
            step = len(tick_window_words(state.tick, entry.tick_spacing, self.tick_window_pct))
            every = tick_bitmap_word_range(entry.tick_spacing)
            words = range(
                max(words.start - (step if "below" in wanted else 0), every.start),
                min(words.stop + (step if "above" in wanted else 0), every.stop),
            )
            if words != held:
                grown[address] = words
                missing[address] = [w for w in words if w not in held]
        if not grown:
            return set()
        tables = await load_v3_tick_tables(
            self.multicall,
            [(a, self._entries[a].tick_spacing) for a in grown],
            block,
            missing,
        )
        for address, table in tables.items():
            entry = self._entries[address]
            assert entry.ticks is not None and entry.gross is not None
            for tick, (gross, net) in table.items():
                entry.gross[tick] = gross
                entry.ticks[tick] = net
            entry.words = grown[address]
            self._install_ticks(entry, block)
        if len(tables) < len(grown):
            log.info(
                "tick window of %d pool(s) could not be extended at block %d (next refresh)",
                len(grown) - len(tables),
                block,
            )
        return set(tables)

    def _v3_state(
        self, entry: _Entry, sqrt_price_x96: int, tick: int, liquidity: int, block: int
    ) -> V3Pool:
        template = entry.template
        table = (
            template._table
            if template is not None and template.ticks is entry.ticks_tuple
            else None
        )
        return V3Pool(
            entry.ref.address,
            entry.token0,
            entry.token1,
            entry.fee_pips,
            entry.tick_spacing,
            sqrt_price_x96,
            tick,
            liquidity,
            entry.ticks_tuple,
            block,
            table,
            loaded_tick_range=_entry_range(entry),
        )

    def _install_ticks(self, entry: _Entry, block: int) -> None:
        assert entry.ticks is not None and entry.template is not None
        entry.ticks_tuple = tuple(sorted(entry.ticks.items()))
        t = entry.template
        entry.template = V3Pool(
            t.address,
            t.token0,
            t.token1,
            t.fee_pips,
            t.tick_spacing,
            t.sqrt_price_x96,
            t.tick,
            t.liquidity,
            entry.ticks_tuple,
            block,
            loaded_tick_range=_entry_range(entry),
        )
        entry.state = entry.template
        entry.error = None

    async def _reload_touched_ticks(self, touched: dict[str, set[int]], block: int) -> set[str]:
        assert self.multicall is not None
        calls: list[Call] = []
        owners: list[tuple[_Entry, int]] = []
        for address, ticks in touched.items():
            entry = self._entries.get(address)
            if entry is None or entry.ticks is None or entry.template is None:
                continue  # not loaded yet: the full load reads everything
            for tick in sorted(ticks):
                calls.append(Call(address, TICKS + _int16(tick)))
                owners.append((entry, tick))
        if not calls:
            return set()
        answer = await self.multicall.aggregate(calls, block)
        updates: dict[str, dict[int, tuple[int, int] | None]] = {}
        failed: set[str] = set()
        for (entry, tick), result in zip(owners, answer.results, strict=True):
            if not result.success or len(result.return_data) < 256:
                failed.add(entry.ref.address)
                continue
            gross = _word(result.return_data, 0)
            net = _signed_word(result.return_data, 1)
            updates.setdefault(entry.ref.address, {})[tick] = (gross, net) if gross > 0 else None
        reloaded: set[str] = set()
        for address, tick_updates in updates.items():
            entry = self._entries[address]
            if address in failed:
                entry.error = f"tick read failed at block {block}"
                # ticks may be out of date now: load them all again next time
                entry.ticks = None
                continue
            current = entry.ticks
            assert current is not None
            gross_table = entry.gross if entry.gross is not None else {}
            for tick, new in tick_updates.items():
                if new is None:
                    current.pop(tick, None)
                    gross_table.pop(tick, None)
                else:
                    gross_table[tick], current[tick] = new
            entry.gross = gross_table if entry.gross is not None else None
            self._install_ticks(entry, block)
            reloaded.add(address)
        for address in failed - set(updates):
            entry = self._entries[address]
            entry.error = f"tick read failed at block {block}"
            entry.ticks = None
        return reloaded
