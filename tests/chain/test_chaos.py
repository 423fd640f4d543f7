"""scripts/chaos.py at small scale: the real `defi-agent run` SIGKILLed three times on a devnet
with the simulated market, restarted each time; the chain then matches the journal exactly."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.chain, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "chaos.py"


@pytest.mark.timeout(300)
async def test_killed_agent_loses_repeats_and_misbooks_nothing(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        "--kills",
        "3",
        "--min-trades",
        "0",  # the last, clean start trades
        "--max-kill-delay",
        "15",  # the agent takes seconds to start on a busy machine: most kills land later
        "--final-blocks",
        "5",
        "--seed",
        "7",
        "--workdir",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert stdout, stderr.decode()[-3000:]
    result = json.loads(stdout.decode().strip().splitlines()[-1])

    assert result["kills"] >= 3, result  # the real agent was really killed, and restarted
    assert result["trades"] >= 1, result  # and traded on chain
    failures = {
        name: result[name]
        for name in (
            "lost",
            "duplicated",
            "grid_level_bought_twice",
            "non_final",
            "balance_mismatch",
            "journal_contradicts_chain",
            "grid_book_disagrees_with_fills",
            "agent_exited_by_itself",
        )
    }
    assert failures == dict.fromkeys(failures, 0), (result, stderr.decode()[-3000:])
    assert result["final_sigterm_exit_code"] == 0, stderr.decode()[-3000:]
    assert process.returncode == 0
