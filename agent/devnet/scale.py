"""A devnet with thousands of pools (the scale benchmark's chain), deployed fast and cached.

``ScaleDevnet(pools=10_000)`` is the devnet (``deploy.deploy_stack``) plus scale tokens
``SC0..SCn`` paired with each other on every DEX: each pair gets a pool on both V2 DEXes and one
per V3 fee tier (100, 500, 3000, 10000), until the devnet holds ``pools`` pools. Every pool has
liquidity (V2 at the tokens' USD prices; V3 a full-range and a narrow position, so swaps cross
ticks) and the real Uniswap bytecode the devnet deploys.

Fast: every address is known in advance (CREATE nonces, CREATE2 pools), so the tens of
thousands of transactions are sent unsigned from dev accounts in JSON-RPC batches with automine
off, ``txs_per_block`` per block mined by ``evm_mine`` under a raised block gas limit. The
result is dumped (``anvil_dumpState``) to ``anvil/state/`` (gitignored) under a name holding a
hash of the parameters and of the code that deploys them, and loaded with ``--load-state`` the
next time.

``ScaleMarket`` trades it: one dev account holding every token swaps on random pools through
the real routers, a whole block's swaps sent in one batch and mined in one ``evm_mine``.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from fractions import Fraction
from itertools import combinations
from pathlib import Path
from typing import Any

from agent.chain.abi import calldata, sort_tokens, v2_pair_address, v3_pool_address
from agent.devnet import Devnet, _state_key
from agent.devnet.deploy import (
    _FAR_DEADLINE,
    MAX_UINT256,
    V2_DEXES,
    V3_POSITIONS,
    V3_TICK_SPACING,
    Deployment,
    PoolInfo,
    TokenSpec,
    _artifact,
    _creation_code,
    _execute,
    _Plan,
    _usd_to_units,
    deploy_stack,
    plan_v3_pool,
)
from agent.devnet.jsonrpc import JsonRpc
from agent.devnet.node import DEV_ACCOUNTS, PROJECT_ROOT
from agent.errors import FatalError
from agent.types import Token

SCALE_STATE_DIR = PROJECT_ROOT / "anvil" / "state"
SCALE_TRADER = DEV_ACCOUNTS[9][0]
# a pair's pools, in the order they are added: both V2 DEXes, then every V3 fee tier
_SLOTS: tuple[tuple[str, int], ...] = (
    *((dex, 3000) for dex in V2_DEXES),
    *(("uniswap_v3", fee) for fee in (100, 500, 3000, 10000)),
)
_V2_DEPTH_USD = {"uniswap_v2": 100_000, "sushiswap": 40_000}
_V3_DEPTH_USD = 200_000
_V3_SCALE_POSITIONS = (V3_POSITIONS[0], V3_POSITIONS[4])  # full range, +-150 ticks
_BLOCK_GAS_LIMIT = 2_000_000_000  # a block of the market's swaps, whatever their number
_SWAP_GAS = 400_000


def scale_tokens(count: int) -> list[TokenSpec]:
    """``count`` deterministic tokens with assorted prices (0.5 to 250 USD) and decimals."""
    return [
        TokenSpec(f"SC{i}", (18, 6, 8)[i % 3], Fraction(1 + (i * 37) % 500, 2))
        for i in range(count)
    ]


def scale_token_count(pools: int) -> int:
    """Fewest scale tokens whose pairs hold ``pools`` pools (one per slot of each pair)."""
    count = 2
    while math.comb(count, 2) * len(_SLOTS) < pools:
        count += 1
    return count


async def deploy_scale(
    rpc: JsonRpc, *, pools: int, name: str = "scale", txs_per_block: int = 500
) -> Deployment:
    """Deploy the devnet, then scale tokens and pools until there are ``pools`` pools."""
    base = await deploy_stack(rpc, name=name)
    wanted = pools - len(base.pools)
    if wanted <= 0:
        return base
    deployer = DEV_ACCOUNTS[0][0]
    nonce = int(await rpc.call("eth_getTransactionCount", [deployer, "latest"]), 16)
    plan = _Plan(deployer, nonce)
    specs = {s.symbol: s for s in scale_tokens(scale_token_count(wanted))}
    addresses = dict(base.addresses)
    test_erc20 = _creation_code(_artifact(PROJECT_ROOT / "abis" / "TestERC20.json"))
    npm = addresses["uniswap_v3.position_manager"]
    lp_spenders = (*(addresses[f"{d}.router"] for d in V2_DEXES), npm)
    for spec in specs.values():
        token = addresses[spec.symbol] = plan.deploy(
            f"token {spec.symbol}",
            test_erc20,
            ["string", "string", "uint8"],
            [f"Scale {spec.symbol}", spec.symbol, spec.decimals],
            gas=2_000_000,
        )
        supply = 10**12 * 10**spec.decimals
        for holder in (deployer, SCALE_TRADER):
            plan.call(
                f"mint {spec.symbol}", token, "mint(address,uint256)", *_addr_amount(holder, supply)
            )
        for spender in lp_spenders:
            plan.call(
                f"approve {spec.symbol}",
                token,
                "approve(address,uint256)",
                *_addr_amount(spender, MAX_UINT256),
            )

    added: list[PoolInfo] = []
    pairs = combinations(specs.values(), 2)
    while len(added) < wanted:
        spec_a, spec_b = next(pairs)
        for dex, fee in _SLOTS[: wanted - len(added)]:
            added.append(_plan_pool(plan, addresses, (spec_a, spec_b), dex, fee))
    await _execute(rpc, plan, txs_per_block=txs_per_block)

    # the trader approves the routers for every token it may sell (a throwaway dev account)
    trader_nonce = int(await rpc.call("eth_getTransactionCount", [SCALE_TRADER, "latest"]), 16)
    trader = _Plan(SCALE_TRADER, trader_nonce)
    routers = (*(addresses[f"{d}.router"] for d in V2_DEXES), addresses["uniswap_v3.swap_router"])
    for symbol in (*base.tokens, *specs):
        for router in routers:
            trader.call(
                f"trader approve {symbol}",
                addresses[symbol],
                "approve(address,uint256)",
                *_addr_amount(router, MAX_UINT256),
            )
    await _execute(rpc, trader, txs_per_block=txs_per_block)

    tokens = dict(base.tokens)
    tokens.update(
        {
            s: Token(address=addresses[s], symbol=s, decimals=spec.decimals)
            for s, spec in specs.items()
        }
    )
    prices = dict(base.prices_usd)
    prices.update({s: float(spec.price_usd) for s, spec in specs.items()})
    return Deployment(
        name, base.chain_id, base.rpc_url, addresses, tokens, base.pools + tuple(added), prices
    )


def _addr_amount(address: str, amount: int) -> tuple[list[str], list[Any]]:
    return ["address", "uint256"], [address, amount]


def _plan_pool(
    plan: _Plan,
    addresses: dict[str, str],
    pair: tuple[TokenSpec, TokenSpec],
    dex: str,
    fee: int,
) -> PoolInfo:
    spec_a, spec_b = pair
    token_a, token_b = addresses[spec_a.symbol], addresses[spec_b.symbol]
    t0, t1 = sort_tokens(token_a, token_b)
    spec0, spec1 = (spec_a, spec_b) if t0 == token_a else (spec_b, spec_a)
    if dex in V2_DEXES:
        depth = Fraction(_V2_DEPTH_USD[dex])
        plan.call(
            f"{dex} addLiquidity {spec_a.symbol}/{spec_b.symbol}",
            addresses[f"{dex}.router"],
            "addLiquidity(address,address,uint256,uint256,uint256,uint256,address,uint256)",
            ["address"] * 2 + ["uint256"] * 4 + ["address", "uint256"],
            [
                t0,
                t1,
                _usd_to_units(depth, spec0),
                _usd_to_units(depth, spec1),
                0,
                0,
                plan.sender,
                _FAR_DEADLINE,
            ],
            gas=4_000_000,
        )
        return PoolInfo(
            dex, "v2", v2_pair_address(addresses[f"{dex}.factory"], t0, t1), t0, t1, 3000
        )
    plan_v3_pool(
        plan,
        addresses["uniswap_v3.position_manager"],
        f"{spec_a.symbol}/{spec_b.symbol}",
        (t0, spec0),
        (t1, spec1),
        fee,
        _V3_DEPTH_USD,
        _V3_SCALE_POSITIONS,
        recipient=plan.sender,
    )
    factory = addresses["uniswap_v3.factory"]
    return PoolInfo(
        "uniswap_v3", "v3", v3_pool_address(factory, t0, t1, fee), t0, t1, fee, V3_TICK_SPACING[fee]
    )


def _scale_state_key(pools: int) -> str:
    digest = hashlib.sha256(_state_key(0).encode())
    digest.update(f"pools={pools}".encode())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()


class ScaleDevnet(Devnet):
    """``Devnet`` holding ``pools`` pools; its state is cached in ``state_dir`` (None: never)."""

    def __init__(
        self,
        pools: int = 10_000,
        *,
        name: str = "scale",
        state_dir: Path | None = SCALE_STATE_DIR,
        txs_per_block: int = 500,
    ) -> None:
        super().__init__(name=name, deployments_dir=None)
        self.pool_count = pools
        self.txs_per_block = txs_per_block
        if state_dir is not None:
            self.state_file = state_dir / f"{name}-{pools}-{self._state_key()[:16]}.json"

    def _state_key(self) -> str:
        return _scale_state_key(self.pool_count)

    async def _deploy(self, rpc: JsonRpc) -> Deployment:
        return await deploy_scale(
            rpc, pools=self.pool_count, name=self.name, txs_per_block=self.txs_per_block
        )

    async def start(self) -> ScaleDevnet:
        await super().start()
        # a block of the market's swaps fits whatever their number; eth_call gets the same cap
        await self.call("evm_setBlockGasLimit", [hex(_BLOCK_GAS_LIMIT)])
        return self


@dataclass
class ScaleMarket:
    """Real swaps on random pools of a scale devnet, one block at a time.

    ``step(count)`` sends ``count`` swaps on distinct pools (random side, 50 to 2,000 USD, no
    minimum out: a devnet trader, not the agent) from ``trader`` in one JSON-RPC batch with
    automine off, mines them in one block and checks every receipt (``reverted`` counts
    failures).
    """

    rpc: JsonRpc
    deployment: Deployment
    seed: int = 13
    trader: str = SCALE_TRADER
    reverted: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._nonce: int | None = None
        self._prices = {
            t.address: (t, self.deployment.prices_usd[s]) for s, t in self.deployment.tokens.items()
        }

    async def step(self, count: int) -> int:
        """One block of ``count`` swaps; returns its number."""
        if self._nonce is None:
            await self.rpc.call("evm_setAutomine", [False])
            self._nonce = int(
                await self.rpc.call("eth_getTransactionCount", [self.trader, "latest"]), 16
            )
        pools = self._rng.sample(self.deployment.pools, min(count, len(self.deployment.pools)))
        requests = [
            ("eth_sendTransaction", [self._swap(pool, self._nonce + i)])
            for i, pool in enumerate(pools)
        ]
        self._nonce += len(requests)
        hashes = await self.rpc.batch(requests)
        await self.rpc.call("evm_mine", [])
        receipts = await self.rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
        if any(r is None for r in receipts):
            raise FatalError("a scale market swap was not mined in its block")
        self.reverted += sum(int(r["status"], 16) != 1 for r in receipts)
        return int(await self.rpc.call("eth_blockNumber"), 16)

    def _swap(self, pool: PoolInfo, nonce: int) -> dict[str, str]:
        token_in, token_out = (
            (pool.token0, pool.token1) if self._rng.random() < 0.5 else (pool.token1, pool.token0)
        )
        token, price_usd = self._prices[token_in]
        usd = self._rng.choice((50, 200, 1_000, 2_000))
        amount_in = int(Fraction(usd) / Fraction(price_usd) * 10**token.decimals)
        a = self.deployment.addresses
        if pool.kind == "v2":
            to = a[f"{pool.dex}.router"]
            data = calldata(
                "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)",
                ["uint256", "uint256", "address[]", "address", "uint256"],
                [amount_in, 0, [token_in, token_out], self.trader, _FAR_DEADLINE],
            )
        else:
            to = a["uniswap_v3.swap_router"]
            data = calldata(
                "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))",
                ["(address,address,uint24,address,uint256,uint256,uint256,uint160)"],
                [(token_in, token_out, pool.fee_pips, self.trader, _FAR_DEADLINE, amount_in, 0, 0)],
            )
        return {
            "from": self.trader,
            "to": to,
            "data": "0x" + data.hex(),
            "gas": hex(_SWAP_GAS),
            "nonce": hex(nonce),
        }
