"""Local quotes equal the chain to the wei: QuoterV2 / Router02 quotes and the balances that
really move when the swap is executed through SwapRouter / Router02.

Each round reads every pool through ``PoolRegistry.refresh`` (one request), draws up to nine
random swaps on distinct pools (one funded dev account each), checks the local quote against
QuoterV2 or Router02 (one batched multicall), executes them in one block through the routers,
and compares the traders' balance changes with the local ``swap`` result. Covered: all four
V3 fee tiers, both directions, exact input and exact output, swaps crossing 3+ initialized
ticks, swaps stopped by a price limit, dust and very large amounts.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector

from agent.chain.multicall import Call, Multicall
from agent.chain.rpc import RpcClient
from agent.devnet import Devnet
from agent.dex.pools import PoolRegistry, fetch_v3_pool, tick_window_words
from agent.dex.v2 import V2Pool
from agent.dex.v3 import V3Pool
from agent.dex.v3_math import MAX_SQRT_RATIO, MIN_SQRT_RATIO, get_sqrt_ratio_at_tick
from agent.errors import SwapRevert, TicksNotLoaded

pytestmark = pytest.mark.chain

DEADLINE = 2**40
MAX_UINT256 = 2**256 - 1
SWAP_GAS = 3_000_000  # nine swaps must fit in Anvil's 30M block gas limit


def selector(signature: str) -> bytes:
    return function_signature_to_4byte_selector(signature)


EXACT_INPUT_SINGLE = selector(
    "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))"
)
EXACT_OUTPUT_SINGLE = selector(
    "exactOutputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))"
)
QUOTE_EXACT_INPUT_SINGLE = selector(
    "quoteExactInputSingle((address,address,uint256,uint24,uint160))"
)
QUOTE_EXACT_OUTPUT_SINGLE = selector(
    "quoteExactOutputSingle((address,address,uint256,uint24,uint160))"
)
GET_AMOUNTS_OUT = selector("getAmountsOut(uint256,address[])")
GET_AMOUNTS_IN = selector("getAmountsIn(uint256,address[])")
SWAP_EXACT_TOKENS = selector("swapExactTokensForTokens(uint256,uint256,address[],address,uint256)")
SWAP_FOR_EXACT_TOKENS = selector(
    "swapTokensForExactTokens(uint256,uint256,address[],address,uint256)"
)
BALANCE_OF = selector("balanceOf(address)")
MINT = selector(
    "mint((address,address,uint24,int24,int24,uint256,uint256,uint256,uint256,address,uint256))"
)
APPROVE = selector("approve(address,uint256)")


@dataclass
class PlannedSwap:
    pool: V2Pool | V3Pool
    trader: str
    token_in: str
    token_out: str
    exact_input: bool
    amount: int  # amount in (exact input) or amount out (exact output), smallest units
    limit: int | None
    size_class: str
    expected_in: int = 0
    expected_out: int = 0
    crossed_ticks: int = 0
    stopped_by_limit: bool = False
    refused: bool = False  # the local math refused: it would leave the loaded ticks


class Chain:
    """Test-side driver: sends blocks of transactions from unlocked dev accounts."""

    def __init__(self, client: RpcClient, devnet: Devnet) -> None:
        self.client = client
        self.devnet = devnet
        self.multicall = Multicall(client)
        # quoter calls walk ticks and can cost millions of gas: few per eth_call
        self.quote_multicall = Multicall(client, max_calls_per_chunk=3)

    async def mine_transactions(self, txs: Sequence[dict[str, str]]) -> int:
        """Send ``txs`` with automine off, mine them in one block, require success."""
        senders = sorted({t["from"] for t in txs})
        counts = await self.client.batch_raw(
            [("eth_getTransactionCount", [sender, "latest"]) for sender in senders]
        )
        # explicit nonces: Anvil may handle a batch's requests concurrently
        nonces = {sender: int(count, 16) for sender, count in zip(senders, counts, strict=True)}
        numbered = []
        for t in txs:
            numbered.append({**t, "nonce": hex(nonces[t["from"]])})
            nonces[t["from"]] += 1
        await self.client.call_raw("evm_setAutomine", [False])
        try:
            hashes = await self.client.batch_raw([("eth_sendTransaction", [t]) for t in numbered])
            await self.client.call_raw("evm_mine")
        finally:
            await self.client.call_raw("evm_setAutomine", [True])
        receipts = await self.client.batch_raw([("eth_getTransactionReceipt", [h]) for h in hashes])
        blocks = {int(r["blockNumber"], 16) for r in receipts}
        assert len(blocks) == 1, "all swaps of a round must land in one block"
        failed = [i for i, r in enumerate(receipts) if int(r["status"], 16) != 1]
        assert not failed, f"transactions reverted: {[txs[i]['data'][:10] for i in failed]}"
        return blocks.pop()

    async def balances(self, pairs: Sequence[tuple[str, str]], block: int) -> list[int]:
        calls = [Call(token, BALANCE_OF + encode(["address"], [owner])) for token, owner in pairs]
        answer = await self.multicall.aggregate(calls, block)
        assert all(r.success for r in answer.results)
        return [int.from_bytes(r.return_data, "big") for r in answer.results]

    async def approve_all(self, traders: Sequence[str], spenders: Sequence[str]) -> None:
        txs = []
        for trader in traders:
            for token in self.devnet.tokens.values():
                for spender in spenders:
                    data = APPROVE + encode(["address", "uint256"], [spender, MAX_UINT256])
                    txs.append(tx(trader, token.address, data, 100_000))
        await self.mine_transactions(txs)

    async def head(self) -> int:
        return int(await self.client.call_raw("eth_blockNumber"), 16)


async def add_narrow_positions(
    chain: Chain, owner: str, pools: Sequence[V3Pool], per_pool: int, rng: random.Random
) -> None:
    """Mint ``per_pool`` narrow positions near the price of each pool (through the position
    manager), so swaps cross many initialized ticks; the tokens come from ``owner``."""
    txs = []
    for pool in pools:
        spacing = pool.tick_spacing
        for _ in range(per_pool):
            lower = (pool.tick // spacing + rng.randint(-40, 20)) * spacing
            upper = lower + spacing * rng.randint(1, 25)
            txs.append(mint_tx(chain, owner, pool, lower, upper, rng))
    for start in range(0, len(txs), 25):
        await chain.mine_transactions(txs[start : start + 25])


def mint_tx(
    chain: Chain, owner: str, pool: V3Pool, lower: int, upper: int, rng: random.Random
) -> dict[str, str]:
    """A position manager mint of a "medium" USD amount of each token into [lower, upper)."""
    params = (
        pool.token0,
        pool.token1,
        pool.fee_pips,
        lower,
        upper,
        usd_amount(chain, pool.token0, rng, "medium"),
        usd_amount(chain, pool.token1, rng, "medium"),
        0,
        0,
        owner,
        DEADLINE,
    )
    data = MINT + encode(
        ["(address,address,uint24,int24,int24,uint256,uint256,uint256,uint256,address,uint256)"],
        [params],
    )
    return tx(owner, chain.devnet.addresses["uniswap_v3.position_manager"], data, 1_000_000)


def tx(sender: str, to: str, data: bytes, gas: int) -> dict[str, str]:
    return {"from": sender, "to": to, "data": "0x" + data.hex(), "gas": hex(gas)}


@pytest.fixture
async def chain(w3: Any, devnet: Devnet) -> AsyncIterator[Chain]:
    """A Chain on the devnet; ``w3`` (evm_snapshot/evm_revert) undoes every swap afterwards."""
    async with RpcClient([devnet.rpc_url], timeout_s=60) as client:
        yield Chain(client, devnet)


def registry_for(
    chain: Chain, event_driven: bool = False, tick_window_pct: float | None = None
) -> PoolRegistry:
    """The pools, re-read every block or (``event_driven``) advanced by their logs after the
    first load, with every pool spot-checked every block (``drift_count`` must stay 0)."""
    a = chain.devnet.addresses
    registry = PoolRegistry(
        chain.client,
        v2_factories={"uniswap_v2": a["uniswap_v2.factory"], "sushiswap": a["sushiswap.factory"]},
        v3_factory=a["uniswap_v3.factory"],
        event_driven=event_driven,
        spot_check_size=len(chain.devnet.pools),
        tick_window_pct=tick_window_pct,
    )
    for info in chain.devnet.pools:
        if info.kind == "v2":
            registry.add_v2_pool(info.address, info.token0, info.token1, dex=info.dex)
        else:
            registry.add_v3_pool(
                info.address, info.token0, info.token1, info.fee_pips, info.tick_spacing
            )
    return registry


def usd_amount(chain: Chain, token: str, rng: random.Random, size_class: str) -> int:
    symbol = next(s for s, t in chain.devnet.tokens.items() if t.address == token)
    decimals = chain.devnet.tokens[symbol].decimals
    price = chain.devnet.deployment.prices_usd.get(symbol, 1.0) if chain.devnet.deployment else 1.0
    if size_class == "dust":
        return rng.randint(1, 2000)
    low, high = {
        "small": (1, 500),
        "medium": (1_000, 50_000),
        "large": (100_000, 600_000),
        "very_large": (800_000, 1_600_000),
    }[size_class]
    usd = rng.uniform(low, high)
    return max(1, int(usd / price * 10**decimals))


SIZE_CLASSES = ["dust", "small", "medium", "medium", "large", "large", "very_large"]


def plan_v3(chain: Chain, pool: V3Pool, trader: str, rng: random.Random) -> PlannedSwap:
    zero_for_one = rng.random() < 0.5
    token_in, token_out = (pool.token0, pool.token1) if zero_for_one else (pool.token1, pool.token0)
    exact_input = rng.random() < 0.5
    size_class = rng.choice(SIZE_CLASSES)
    amount = usd_amount(chain, token_in if exact_input else token_out, rng, size_class)
    limit: int | None = None
    if rng.random() < 0.3:
        sqrt_price = pool.sqrt_price_x96
        choice = rng.random()
        nearby = [t for t, _ in pool.ticks if (t < pool.tick if zero_for_one else t > pool.tick)]
        if choice < 0.4 and nearby:
            # one of the three initialized ticks next in the swap's direction
            tick = rng.choice(sorted(nearby, key=lambda t: abs(t - pool.tick))[:3])
            limit = get_sqrt_ratio_at_tick(tick)
        else:
            bps = rng.randint(1, 800)
            limit = (
                sqrt_price - sqrt_price * bps // 10_000
                if zero_for_one
                else (sqrt_price + sqrt_price * bps // 10_000)
            )
        floor, ceiling = MIN_SQRT_RATIO + 1, MAX_SQRT_RATIO - 1
        limit = max(limit, floor) if zero_for_one else min(limit, ceiling)
    return PlannedSwap(pool, trader, token_in, token_out, exact_input, amount, limit, size_class)


def quoter_call(chain: Chain, swap: PlannedSwap) -> Call:
    assert isinstance(swap.pool, V3Pool)
    quoter = chain.devnet.addresses["uniswap_v3.quoter_v2"]
    params = (swap.token_in, swap.token_out, swap.amount, swap.pool.fee_pips, swap.limit or 0)
    fn = QUOTE_EXACT_INPUT_SINGLE if swap.exact_input else QUOTE_EXACT_OUTPUT_SINGLE
    return Call(quoter, fn + encode(["(address,address,uint256,uint24,uint160)"], [params]))


def router_tx(chain: Chain, swap: PlannedSwap) -> dict[str, str]:
    assert isinstance(swap.pool, V3Pool)
    router = chain.devnet.addresses["uniswap_v3.swap_router"]
    if swap.exact_input:
        params = (
            swap.token_in,
            swap.token_out,
            swap.pool.fee_pips,
            swap.trader,
            DEADLINE,
            swap.amount,
            swap.expected_out,
            swap.limit or 0,
        )
        data = EXACT_INPUT_SINGLE
    else:
        params = (
            swap.token_in,
            swap.token_out,
            swap.pool.fee_pips,
            swap.trader,
            DEADLINE,
            swap.amount,
            swap.expected_in,
            swap.limit or 0,
        )
        data = EXACT_OUTPUT_SINGLE
    encoded = encode(["(address,address,uint24,address,uint256,uint256,uint256,uint160)"], [params])
    return tx(swap.trader, router, data + encoded, SWAP_GAS)


def simulate_v3(swap: PlannedSwap) -> bool:
    """Fill ``expected_*`` from the local simulation; False when the chain would revert."""
    pool = swap.pool
    assert isinstance(pool, V3Pool)
    try:
        if swap.exact_input:
            quote = pool.quote_exact_input(swap.token_in, swap.amount, swap.limit)
            result = pool.swap(swap.token_in, swap.amount, swap.limit)
            assert result.amount_out == quote
        else:
            quote = pool.quote_exact_output(swap.token_out, swap.amount, swap.limit)
            result = pool.swap(swap.token_in, -swap.amount, swap.limit)
            assert result.amount_in == quote
    except TicksNotLoaded:
        swap.refused = True
        return False
    except SwapRevert:
        return False
    swap.expected_in, swap.expected_out = result.amount_in, result.amount_out
    after = result.pool
    low, high = sorted((pool.tick, after.tick))
    swap.crossed_ticks = sum(1 for t, _ in pool.ticks if low < t <= high)
    swap.stopped_by_limit = swap.limit is not None and after.sqrt_price_x96 == swap.limit
    return True


@pytest.mark.parametrize(
    ("event_driven", "window_pct"),
    [(False, None), (True, None), (True, 10.0)],
    ids=["reread", "events", "events-window"],
)
async def test_v3_local_quotes_equal_quoter_and_executed_swaps(
    chain: Chain, event_driven: bool, window_pct: float | None
) -> None:
    rng = random.Random(20240607)
    traders = [address for address, _ in chain.devnet.accounts[1:10]]
    npm = chain.devnet.addresses["uniswap_v3.position_manager"]
    await chain.approve_all(traders, [chain.devnet.addresses["uniswap_v3.swap_router"], npm])
    registry = registry_for(chain, event_driven, window_pct)
    v3_addresses = [p.address for p in chain.devnet.pools if p.kind == "v3"]
    assert (await registry.refresh(await chain.head())).ok
    v3_pools = [registry.get(a) for a in v3_addresses]
    await add_narrow_positions(
        chain, traders[0], [p for p in v3_pools if isinstance(p, V3Pool)], 6, rng
    )
    executed: list[PlannedSwap] = []
    reverts_agreed = 0
    refused = 0  # with a tick window: quotes that would leave it (never a wrong answer)
    rounds = 0
    while len(executed) < 520:
        rounds += 1
        assert rounds < 150, "too many rounds: most planned swaps are not executable"
        block = await chain.head()
        refresh = await registry.refresh(block)
        assert refresh.ok, refresh.error
        if window_pct is not None:  # the window followed every price the swaps moved
            for address in v3_addresses:
                held = registry.get(address)
                assert isinstance(held, V3Pool) and held.loaded_tick_range is not None
                wanted = tick_window_words(held.tick, held.tick_spacing, window_pct)
                lowest, highest = held.loaded_tick_range
                assert lowest <= (wanted.start << 8) * held.tick_spacing
                assert highest >= ((wanted.stop << 8) - 1) * held.tick_spacing
        pools = [registry.get(a) for a in rng.sample(v3_addresses, len(traders))]
        plans = [
            plan_v3(chain, pool, trader, rng)
            for pool, trader in zip(pools, traders, strict=True)
            if isinstance(pool, V3Pool)
        ]
        quotes = await chain.quote_multicall.aggregate(
            [quoter_call(chain, s) for s in plans], block
        )
        balances_before = await chain.balances(
            [(s.token_in, s.trader) for s in plans] + [(s.token_out, s.trader) for s in plans],
            block,
        )
        to_execute: list[PlannedSwap] = []
        for i, (swap, quote) in enumerate(zip(plans, quotes.results, strict=True)):
            local_ok = simulate_v3(swap)
            if swap.refused:
                assert window_pct is not None, f"refused with every tick loaded: {swap}"
                refused += 1
                continue
            if not local_ok:
                assert not quote.success, f"QuoterV2 answered where local math reverted: {swap}"
                reverts_agreed += 1
                continue
            assert quote.success, f"QuoterV2 reverted where local math quoted: {swap}"
            quoted = decode(["uint256", "uint160", "uint32", "uint256"], quote.return_data)[0]
            local = swap.expected_out if swap.exact_input else swap.expected_in
            assert local == quoted, f"local {local} != QuoterV2 {quoted} for {swap}"
            if swap.expected_in <= balances_before[i]:
                to_execute.append(swap)
        if not to_execute:
            continue
        mined = await chain.mine_transactions([router_tx(chain, s) for s in to_execute])
        pairs = [(s.token_in, s.trader) for s in to_execute] + [
            (s.token_out, s.trader) for s in to_execute
        ]
        before = await chain.balances(pairs, block)
        after = await chain.balances(pairs, mined)
        n = len(to_execute)
        for i, swap in enumerate(to_execute):
            paid = before[i] - after[i]
            received = after[n + i] - before[n + i]
            assert (paid, received) == (swap.expected_in, swap.expected_out), swap
            executed.append(swap)

    fees = Counter(s.pool.fee_pips for s in executed)
    assert set(fees) == {100, 500, 3000, 10000}, fees
    assert {s.token_in == s.pool.token0 for s in executed} == {True, False}
    assert {s.exact_input for s in executed} == {True, False}
    assert sum(s.crossed_ticks >= 3 for s in executed) >= 30
    assert sum(s.stopped_by_limit for s in executed) >= 10
    assert sum(s.size_class == "dust" for s in executed) >= 10
    # local math and QuoterV2 also agree on what reverts; with a window, the swaps that drain
    # a pool leave the loaded ticks first and are refused instead
    assert reverts_agreed >= 1 if window_pct is None else refused >= 1
    assert sum(s.size_class == "very_large" for s in executed) >= 10
    assert registry.drift_count == 0
    assert (registry.event_refreshes > 0) == event_driven
    # the registry, refreshed after all those swaps, still equals a full independent read
    final = await chain.head()
    await registry.refresh(final)

    for address in v3_addresses[:4]:
        full = await fetch_v3_pool(chain.client, address, final)
        held = registry.get(address)
        assert isinstance(held, V3Pool)
        if window_pct is not None:
            # the loaded words, exactly: every initialized tick in them and nothing else
            assert held.loaded_tick_range is not None
            lowest, highest = held.loaded_tick_range
            assert held.ticks == tuple((t, n) for t, n in full.ticks if lowest <= t <= highest)
            assert (held.sqrt_price_x96, held.tick, held.liquidity) == (
                full.sqrt_price_x96,
                full.tick,
                full.liquidity,
            )
            continue
        assert held == full
    assert registry.drift_count == 0  # events alone kept every pool exact
    assert registry.event_refreshes >= (rounds - 1 if event_driven else 0)


def loaded_words(pool: V3Pool) -> int:
    assert pool.loaded_tick_range is not None
    lowest, highest = pool.loaded_tick_range
    return (highest - lowest + pool.tick_spacing) // (256 * pool.tick_spacing)


async def quoter_exact_input(chain: Chain, pool: V3Pool, token_in: str, amount: int) -> int:
    token_out = pool.token1 if token_in == pool.token0 else pool.token0
    swap = PlannedSwap(pool, "", token_in, token_out, True, amount, None, "")
    answer = await chain.quote_multicall.aggregate([quoter_call(chain, swap)], await chain.head())
    assert answer.results[0].success
    return int(
        decode(["uint256", "uint160", "uint32", "uint256"], answer.results[0].return_data)[0]
    )


async def amount_leaving(chain: Chain, pool: V3Pool, zero_for_one: bool) -> int:
    """An exact input whose swap (on the whole tick table) ends past ``pool``'s loaded ticks."""
    full = await fetch_v3_pool(chain.client, pool.address, pool.block)
    assert pool.loaded_tick_range is not None
    lowest, highest = pool.loaded_tick_range
    token_in = pool.token0 if zero_for_one else pool.token1
    amount = 10**6
    while True:
        after = full.swap(token_in, amount).pool
        if (after.tick < lowest) if zero_for_one else (after.tick > highest):
            return amount
        amount *= 2


async def test_v3_first_load_reads_a_few_words_around_the_price(chain: Chain) -> None:
    registry = registry_for(chain, event_driven=True, tick_window_pct=10.0)
    head = await chain.head()
    assert (await registry.refresh(head)).ok
    for info in chain.devnet.pools:
        if info.kind != "v3":
            continue
        pool = registry.get(info.address)
        assert isinstance(pool, V3Pool)
        # +-10% of price: about 2,000 ticks, in 256-tick-spacing words
        assert loaded_words(pool) <= (9 if info.tick_spacing == 1 else 2), info
        full = await fetch_v3_pool(chain.client, info.address, head)
        assert pool.loaded_tick_range is not None
        lowest, highest = pool.loaded_tick_range
        # exactly the initialized ticks of the loaded words
        assert pool.ticks == tuple((t, n) for t, n in full.ticks if lowest <= t <= highest)
        # a quote inside the window equals the whole table's
        small = 10**3
        assert pool.quote_exact_input(pool.token0, small) == full.quote_exact_input(
            pool.token0, small
        )


async def test_v3_quote_past_the_loaded_ticks_is_refused_then_exact_once_loaded(
    chain: Chain,
) -> None:
    registry = registry_for(chain, event_driven=True, tick_window_pct=2.0)
    assert (await registry.refresh(await chain.head())).ok
    info = next(p for p in chain.devnet.pools if p.kind == "v3" and p.fee_pips == 100)
    pool = registry.get(info.address)
    assert isinstance(pool, V3Pool)
    amount = await amount_leaving(chain, pool, zero_for_one=True)
    with pytest.raises(TicksNotLoaded) as refused:
        pool.quote_exact_input(pool.token0, amount)
    assert refused.value.direction == "below"
    # the quoter answers, the local math refused rather than guessed; the refusal asks the
    # registry for more words below, which later refreshes load
    for _ in range(20):
        await chain.client.call_raw("evm_mine")
        refreshed = await registry.refresh(await chain.head())
        assert refreshed.ok, refreshed.error
        pool = registry.get(info.address)
        assert isinstance(pool, V3Pool)
        try:
            local = pool.quote_exact_input(pool.token0, amount)
            break
        except TicksNotLoaded:
            continue
    else:
        raise AssertionError("the window never grew far enough")
    assert local == await quoter_exact_input(chain, pool, pool.token0, amount)
    assert registry.event_refreshes > 0 and registry.drift_count == 0


async def test_v3_mint_outside_the_loaded_ticks_stays_exact(chain: Chain) -> None:
    rng = random.Random(7)
    owner = chain.devnet.accounts[1][0]
    npm = chain.devnet.addresses["uniswap_v3.position_manager"]
    await chain.approve_all([owner], [npm])
    registry = registry_for(chain, event_driven=True, tick_window_pct=2.0)
    assert (await registry.refresh(await chain.head())).ok
    info = next(p for p in chain.devnet.pools if p.kind == "v3" and p.fee_pips == 100)
    pool = registry.get(info.address)
    assert isinstance(pool, V3Pool) and pool.loaded_tick_range is not None
    lowest, highest = pool.loaded_tick_range
    # a position entirely above the loaded words, and one straddling their lower edge
    ranges = [(highest + 300, highest + 400), (lowest - 50, lowest + 50)]
    txs = [mint_tx(chain, owner, pool, lower, upper, rng) for lower, upper in ranges]
    minted = await chain.mine_transactions(txs)
    refreshed = await registry.refresh(minted)
    assert refreshed.ok and registry.event_refreshes == 1
    after = registry.get(info.address)
    # the ticks inside the words changed exactly; those outside were left unknown
    assert after == await fetch_v3_pool(chain.client, info.address, minted, window_pct=2.0)
    assert (lowest + 50) in dict(after.ticks) and (lowest - 50) not in dict(after.ticks)
    # a swap up into the position above is refused, then exact once the window has grown
    amount = await amount_leaving(chain, after, zero_for_one=False)
    for _ in range(20):
        try:
            local = after.quote_exact_input(after.token1, amount)
            break
        except TicksNotLoaded:
            await chain.client.call_raw("evm_mine")
            assert (await registry.refresh(await chain.head())).ok
            after = registry.get(info.address)
            assert isinstance(after, V3Pool)
    else:
        raise AssertionError("the window never grew far enough")
    assert highest + 300 in dict(after.ticks)
    assert local == await quoter_exact_input(chain, after, after.token1, amount)


def plan_v2(chain: Chain, pool: V2Pool, trader: str, rng: random.Random) -> PlannedSwap:
    zero_for_one = rng.random() < 0.5
    token_in, token_out = (pool.token0, pool.token1) if zero_for_one else (pool.token1, pool.token0)
    exact_input = rng.random() < 0.5
    size_class = rng.choice(SIZE_CLASSES)
    amount = usd_amount(chain, token_in if exact_input else token_out, rng, size_class)
    return PlannedSwap(pool, trader, token_in, token_out, exact_input, amount, None, size_class)


@pytest.mark.parametrize("event_driven", [False, True], ids=["reread", "events"])
async def test_v2_local_quotes_equal_router_and_executed_swaps(
    chain: Chain, event_driven: bool
) -> None:
    rng = random.Random(99)
    traders = [address for address, _ in chain.devnet.accounts[1:10]]
    routers = {dex: chain.devnet.addresses[f"{dex}.router"] for dex in ("uniswap_v2", "sushiswap")}
    await chain.approve_all(traders, list(routers.values()))
    registry = registry_for(chain, event_driven)
    v2_infos = {p.address: p for p in chain.devnet.pools if p.kind == "v2"}
    executed: list[PlannedSwap] = []
    reverts_agreed = 0
    while len(executed) < 300:
        block = await chain.head()
        refresh = await registry.refresh(block)
        assert refresh.ok, refresh.error
        addresses = rng.sample(sorted(v2_infos), len(traders))
        plans = []
        calls = []
        for address, trader in zip(addresses, traders, strict=True):
            pool = registry.get(address)
            # event-advanced: an unchanged pair keeps the state of its last change
            assert isinstance(pool, V2Pool) and pool.block <= block == registry.last_block
            swap = plan_v2(chain, pool, trader, rng)
            plans.append(swap)
            path = [swap.token_in, swap.token_out]
            fn = GET_AMOUNTS_OUT if swap.exact_input else GET_AMOUNTS_IN
            router = routers[v2_infos[address].dex]
            calls.append(Call(router, fn + encode(["uint256", "address[]"], [swap.amount, path])))
        quotes = await chain.multicall.aggregate(calls, block)
        balances_before = await chain.balances([(s.token_in, s.trader) for s in plans], block)
        to_execute = []
        txs = []
        for swap, quote, balance in zip(plans, quotes.results, balances_before, strict=True):
            pool = swap.pool
            assert isinstance(pool, V2Pool)
            try:
                if swap.exact_input:
                    swap.expected_in = swap.amount
                    swap.expected_out = pool.quote_exact_input(swap.token_in, swap.amount)
                else:
                    swap.expected_out = swap.amount
                    swap.expected_in = pool.quote_exact_output(swap.token_out, swap.amount)
            except SwapRevert:
                assert not quote.success, f"Router02 quoted where local math reverted: {swap}"
                reverts_agreed += 1
                continue
            assert quote.success, f"Router02 reverted where local math quoted: {swap}"
            amounts = decode(["uint256[]"], quote.return_data)[0]
            assert (amounts[0], amounts[-1]) == (swap.expected_in, swap.expected_out), swap
            if swap.expected_out == 0 or swap.expected_in > balance:
                continue  # the pair refuses a zero output; the trader cannot pay
            router = routers[v2_infos[pool.address].dex]
            path = [swap.token_in, swap.token_out]
            if swap.exact_input:
                data = SWAP_EXACT_TOKENS + encode(
                    ["uint256", "uint256", "address[]", "address", "uint256"],
                    [swap.amount, swap.expected_out, path, swap.trader, DEADLINE],
                )
            else:
                data = SWAP_FOR_EXACT_TOKENS + encode(
                    ["uint256", "uint256", "address[]", "address", "uint256"],
                    [swap.amount, swap.expected_in, path, swap.trader, DEADLINE],
                )
            to_execute.append(swap)
            txs.append(tx(swap.trader, router, data, 300_000))
        if not txs:
            continue
        mined = await chain.mine_transactions(txs)
        pairs = [(s.token_in, s.trader) for s in to_execute] + [
            (s.token_out, s.trader) for s in to_execute
        ]
        before = await chain.balances(pairs, block)
        after = await chain.balances(pairs, mined)
        n = len(to_execute)
        for i, swap in enumerate(to_execute):
            assert before[i] - after[i] == swap.expected_in, swap
            assert after[n + i] - before[n + i] == swap.expected_out, swap
            executed.append(swap)
    assert {s.exact_input for s in executed} == {True, False}
    assert {s.pool.address for s in executed} >= set(list(v2_infos)[:5])
    assert sum(s.size_class == "dust" for s in executed) >= 5
    assert sum(s.size_class == "very_large" for s in executed) >= 10
    assert registry.drift_count == 0
    assert (registry.event_refreshes > 0) == event_driven
