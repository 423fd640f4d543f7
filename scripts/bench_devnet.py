"""Devnet start-up speed: deploy from scratch, and start from a saved state.

Prints JSON. The baseline, measured in the same run, is the same deployment sent one
transaction at a time with automine, as a plain deploy script would do it.
Targets: deploy from scratch < 2 s, start from saved state < 0.3 s.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from agent.devnet import Devnet
from agent.devnet.deploy import deploy_stack
from agent.devnet.jsonrpc import JsonRpc
from agent.devnet.node import AnvilNode

RUNS = 3


async def _timed_devnet(**kwargs: object) -> tuple[float, int, int]:
    started = time.perf_counter()
    async with Devnet(deployments_dir=None, **kwargs) as devnet:  # type: ignore[arg-type]
        elapsed = time.perf_counter() - started
        txs = int(
            await devnet.call("eth_getTransactionCount", [devnet.accounts[0][0], "latest"]), 16
        )
        return elapsed, len(devnet.pools), txs


async def _naive_deploy() -> float:
    started = time.perf_counter()
    async with AnvilNode() as node, JsonRpc(node.rpc_url) as rpc:
        await deploy_stack(rpc, rpc_url=node.rpc_url, one_block=False)
        return time.perf_counter() - started


async def main() -> None:
    state = Path(tempfile.mkdtemp()) / "devnet.json"
    scratch = [await _timed_devnet() for _ in range(RUNS)]
    await _timed_devnet(state_file=state)  # writes the saved state
    loaded = [await _timed_devnet(state_file=state) for _ in range(RUNS)]
    large = await _timed_devnet(extra_tokens=9)
    naive = [await _naive_deploy() for _ in range(RUNS)]
    scratch_s = statistics.median(t for t, _, _ in scratch)
    loaded_s = statistics.median(t for t, _, _ in loaded)
    naive_s = statistics.median(naive)
    print(
        json.dumps(
            {
                "bench": "devnet",
                "runs": RUNS,
                "pools": scratch[0][1],
                "deploy_transactions": scratch[0][2],
                "deploy_from_scratch_s": round(scratch_s, 3),
                "start_from_saved_state_s": round(loaded_s, 3),
                "deploy_300_pools_s": round(large[0], 3),
                "pools_large": large[1],
                "baseline_one_tx_at_a_time_s": round(naive_s, 3),
                "speedup_vs_baseline": round(naive_s / scratch_s, 1),
                "targets": {"deploy_from_scratch_s": 2.0, "start_from_saved_state_s": 0.3},
                "targets_met": scratch_s < 2.0 and loaded_s < 0.3,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
