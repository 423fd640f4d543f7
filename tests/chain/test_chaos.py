"""scripts/chaos.py at small scale: SIGKILL at random pipeline points, nothing lost or repeated."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from web3 import AsyncWeb3

from agent.devnet import Devnet

pytestmark = [pytest.mark.chain, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "chaos.py"


@pytest.mark.timeout(600)
async def test_chaos_kills_lose_and_repeat_nothing(
    w3: AsyncWeb3, devnet: Devnet, tmp_path: Path
) -> None:
    assert devnet.deployment is not None
    deployment = tmp_path / "devnet.json"
    deployment.write_text(devnet.deployment.to_json())
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        "--trades",
        "5",
        "--seed",
        "7",
        "--rpc-url",
        devnet.rpc_url,
        "--deployment",
        str(deployment),
        "--workdir",
        str(tmp_path),
        env={**os.environ, "CHAOS_PRIVATE_KEY": devnet.accounts[9][1]},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    result = json.loads(stdout.decode().strip().splitlines()[-1])

    assert result["kills"] >= 1, result  # the drill really killed the executor
    assert result["trades_attempted"] == result["trades_planned"] == 5, result
    assert (result["lost"], result["duplicated"], result["non_final"]) == (0, 0, 0), result
    assert result["mismatched"] == 0, result
    assert not any(e.startswith("error") for e in result["child_endings"]), stderr.decode()
    assert process.returncode == 0
