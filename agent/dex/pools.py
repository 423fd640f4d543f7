"""Pool discovery and per-block refresh: every pool's exact state for about two RPC calls a block.

``PoolRegistry.refresh(block)`` sends one HTTP request carrying two JSON-RPC calls: one
Multicall3 ``eth_call`` with V2 ``getReserves`` and V3 ``slot0`` + ``liquidity`` for every pool,
and one ``eth_getLogs`` for V3 ``Mint``/``Burn`` since the last refresh. Only pools with such
logs get a second read, and only of the ticks the logs name (``ticks(t)`` says whether the tick
is still initialized and its new ``liquidity_net``). The first read of a V3 pool loads its whole
tick state through ``tickBitmap`` words and ``ticks()``. All reads of one refresh are pinned to
the same block, and every pool state carries it.

A pool whose read failed keeps its last good state and is listed in ``stale_pools`` (with the
error); it is never replaced by zeros. ``refresh`` never raises for RPC trouble: it returns a
``RefreshResult`` saying what failed.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address

from agent.chain.limits import UNLIMITED, ProviderLimits
from agent.chain.logs import get_logs, log_request, plan_log_ranges
from agent.chain.multicall import Call, CallResult, JsonRpcBatcher, Multicall, Web3Batcher
from agent.dex.v2 import DEFAULT_FEE_PIPS, V2Pool
from agent.dex.v3 import FEE_TIERS_PIPS, TICK_SPACING_BY_FEE, V3Pool
from agent.dex.v3_math import MAX_TICK, MIN_TICK
from agent.errors import AgentError, PoolReadError
from agent.market.snapshot import PoolRef

log = logging.getLogger(__name__)

Pool = V2Pool | V3Pool


def _selector(signature: str) -> bytes:
    return function_signature_to_4byte_selector(signature)


GET_RESERVES = _selector("getReserves()")
TOKEN0 = _selector("token0()")
TOKEN1 = _selector("token1()")
SLOT0 = _selector("slot0()")
LIQUIDITY = _selector("liquidity()")
FEE = _selector("fee()")
TICK_SPACING = _selector("tickSpacing()")
TICK_BITMAP = _selector("tickBitmap(int16)")
TICKS = _selector("ticks(int24)")
GET_PAIR = _selector("getPair(address,address)")
GET_POOL = _selector("getPool(address,address,uint24)")

MINT_TOPIC = "0x" + keccak(text="Mint(address,address,int24,int24,uint128,uint256,uint256)").hex()
BURN_TOPIC = "0x" + keccak(text="Burn(address,int24,int24,uint128,uint256,uint256)").hex()

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


def tick_bitmap_word_range(tick_spacing: int) -> range:
    """Every bitmap word position a pool with ``tick_spacing`` can have a bit in."""
    return range((MIN_TICK // tick_spacing) >> 8, ((MAX_TICK // tick_spacing) >> 8) + 1)


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


async def fetch_v3_pool(rpc: Any, address: str, block: int | None = None) -> V3Pool:
    """Full state of the V3 pool at ``address``: slot0, liquidity, fee, spacing and every
    initialized tick (bitmap words, then ``ticks()``), all read at one block.

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
    ticks = await load_v3_ticks(multicall, [(address, tick_spacing)], pinned)
    if address not in ticks:
        raise PoolReadError(f"V3 pool {address}: tick state could not be read")
    return V3Pool(
        address,
        token0,
        token1,
        fee_pips,
        tick_spacing,
        _word(slot0, 0),
        _signed_word(slot0, 1),
        liquidity,
        tuple(sorted(ticks[address].items())),
        pinned,
    )


async def load_v3_ticks(
    multicall: Multicall, pools: Sequence[tuple[str, int]], block: int
) -> dict[str, dict[int, int]]:
    """``{pool: {tick: liquidity_net}}`` of every initialized tick, for ``(address,
    tick_spacing)`` pools, read at ``block`` (two batched rounds: bitmap words, then ticks).

    Pools whose reads failed are missing from the answer.
    """
    word_calls: list[Call] = []
    owners: list[tuple[str, int, int]] = []
    for address, spacing in pools:
        for word_pos in tick_bitmap_word_range(spacing):
            word_calls.append(Call(address, TICK_BITMAP + _int16(word_pos)))
            owners.append((address, spacing, word_pos))
    words = await multicall.aggregate(word_calls, block)
    failed: set[str] = set()
    tick_calls: list[Call] = []
    tick_owners: list[tuple[str, int]] = []
    for (address, spacing, word_pos), result in zip(owners, words.results, strict=True):
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
    answer: dict[str, dict[int, int]] = {a: {} for a, _ in pools if a not in failed}
    if tick_calls:
        ticks = await multicall.aggregate(tick_calls, block)
        for (address, tick), result in zip(tick_owners, ticks.results, strict=True):
            if address in failed:
                continue
            if not result.success or len(result.return_data) < 64:
                failed.add(address)
                answer.pop(address, None)
                continue
            answer[address][tick] = _signed_word(result.return_data, 1)
    return answer


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
    ticks_tuple: tuple[tuple[int, int], ...] = ()
    template: V3Pool | None = None  # the last V3Pool built, reused while ticks are unchanged


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

    def __post_init__(self) -> None:
        self._batch = _batcher(self.rpc)
        if self.multicall is None:
            self.multicall = Multicall(self._batch)
        self._entries: dict[str, _Entry] = {}
        self._logs_synced_to: int | None = None
        self._refresh_calls: tuple[Call, ...] = ()
        self._refresh_layout: list[tuple[_Entry, int]] = []
        self.last_block: int | None = None

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
        """Pools whose latest read failed (or that were never read)."""
        return frozenset(a for a, e in self._entries.items() if e.error is not None)

    def errors(self) -> dict[str, str]:
        """``{pool: why its last read failed}`` for the stale pools."""
        return {a: e.error for a, e in self._entries.items() if e.error is not None}

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
        )
        self._refresh_calls = ()

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
        )
        self._refresh_calls = ()

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
            if int(pool, 16) == 0 or pool in self._entries:
                continue
            token0, token1 = pair
            if kind == "v2":
                self.add_v2_pool(pool, token0, token1, dex=dex, factory=factory)
            else:
                self.add_v3_pool(pool, token0, token1, fee, dex=dex, factory=factory)
            added += 1
        return added

    # --- refresh -----------------------------------------------------------------------------

    def _build_refresh_calls(self) -> None:
        calls: list[Call] = []
        layout: list[tuple[_Entry, int]] = []
        for address, entry in self._entries.items():
            layout.append((entry, len(calls)))
            if entry.ref.kind == "v2":
                calls.append(Call(address, GET_RESERVES))
            else:
                calls.append(Call(address, SLOT0))
                calls.append(Call(address, LIQUIDITY))
        self._refresh_calls = tuple(calls)
        self._refresh_layout = layout

    async def refresh(self, block_number: int) -> RefreshResult:
        """Bring every pool to ``block_number``. Never raises for RPC or decoding trouble."""
        started = time.perf_counter()
        calls_before, requests_before = self._counters()
        try:
            result = await self._refresh(block_number)
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
        v3_addresses = [a for a, e in self._entries.items() if e.ref.kind == "v3"]
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
                    data = _need(results[index], 2)
                    entry.state = V2Pool(
                        address,
                        entry.token0,
                        entry.token1,
                        _word(data, 0),
                        _word(data, 1),
                        entry.fee_pips,
                        block,
                    )
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
        to_reload = {
            e.ref.address: touched[e.ref.address]
            for e in fresh_v3
            if e.ref.address in touched and e.ticks is not None
        }
        reloaded = await self._reload_touched_ticks(to_reload, block)
        full = [e for e in fresh_v3 if e.ticks is None]
        if full:
            loaded = await load_v3_ticks(
                self.multicall, [(e.ref.address, e.tick_spacing) for e in full], block
            )
            for entry in full:
                ticks = loaded.get(entry.ref.address)
                if ticks is None:
                    entry.error = f"tick state read failed at block {block}"
                    continue
                entry.ticks = ticks
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
        updates: dict[str, dict[int, int | None]] = {}
        failed: set[str] = set()
        for (entry, tick), result in zip(owners, answer.results, strict=True):
            if not result.success or len(result.return_data) < 256:
                failed.add(entry.ref.address)
                continue
            gross = _word(result.return_data, 0)
            net = _signed_word(result.return_data, 1)
            updates.setdefault(entry.ref.address, {})[tick] = net if gross > 0 else None
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
            for tick, new_net in tick_updates.items():
                if new_net is None:
                    current.pop(tick, None)
                else:
                    current[tick] = new_net
            self._install_ticks(entry, block)
            reloaded.add(address)
        for address in failed - set(updates):
            entry = self._entries[address]
            entry.error = f"tick read failed at block {block}"
            entry.ticks = None
        return reloaded
