"""The scale devnet (the benchmark's chain) at unit size: exactly the pools asked for, on both V2
DEXes and every V3 fee tier, each with liquidity, tradable by its market, found by discovery
through the factories, and loaded from its cached state the second time."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.chain.multicall import Call, Multicall
from agent.chain.rpc import RpcClient
from agent.devnet.scale import ScaleDevnet, ScaleMarket
from agent.dex.pools import GET_RESERVES, LIQUIDITY, SLOT0
from tests.chain.test_pools import new_registry

pytestmark = pytest.mark.chain


async def pool_states(client: RpcClient, devnet: ScaleDevnet) -> dict[str, tuple[int, int]]:
    """``{pool: (reserve0, reserve1)}`` of V2 pairs and ``(sqrt_price_x96, liquidity)`` of V3
    pools, read on chain."""
    calls: list[Call] = []
    for p in devnet.pools:
        calls += (
            [Call(p.address, GET_RESERVES)]
            if p.kind == "v2"
            else [
                Call(p.address, SLOT0),
                Call(p.address, LIQUIDITY),
            ]
        )
    results = iter((await Multicall(client).aggregate(calls)).results)
    states = {}
    for p in devnet.pools:
        first = next(results).return_data
        second = first[32:64] if p.kind == "v2" else next(results).return_data
        states[p.address] = (int.from_bytes(first[:32], "big"), int.from_bytes(second, "big"))
    return states


async def test_scale_devnet_deploys_tradable_pools_and_reloads_them(tmp_path: Path) -> None:
    async with (
        ScaleDevnet(100, state_dir=tmp_path) as devnet,
        RpcClient([devnet.rpc_url]) as client,
    ):
        assert devnet.rpc is not None and not devnet.loaded_from_state
        assert len(devnet.pools) == len({p.address for p in devnet.pools}) == 100
        assert {(p.dex, p.fee_pips) for p in devnet.pools} >= {
            ("uniswap_v2", 3000),
            ("sushiswap", 3000),
            *(("uniswap_v3", fee) for fee in (100, 500, 3000, 10000)),
        }
        registry = new_registry(client, devnet)
        assert await registry.discover(t.address for t in devnet.tokens.values()) == 100
        deployed = await pool_states(client, devnet)
        assert all(min(state) > 0 for state in deployed.values())

        market = ScaleMarket(devnet.rpc, devnet.deployment)
        before = int(await client.call_raw("eth_blockNumber"), 16)
        assert await market.step(10) == before + 1  # ten swaps, one block
        assert market.reverted == 0
        traded = await pool_states(client, devnet)
        assert sum(traded[p] != deployed[p] for p in traded) == 10

    async with ScaleDevnet(100, state_dir=tmp_path) as again, RpcClient([again.rpc_url]) as client:
        assert again.loaded_from_state and again.pools == devnet.pools
        assert await pool_states(client, again) == deployed
