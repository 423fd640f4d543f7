"""`defi-agent dry-run --blocks 20` (no config: a fresh devnet) and `defi-agent demo` run as an
operator runs them, exit 0 and report executed profitable arbitrages, realised == predicted.

Both commands start their own chains and mostly wait for 1 s blocks, so they run side by side.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any]


@pytest.fixture(scope="module")
def rehearsals(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Finished]]:
    cwd = tmp_path_factory.mktemp("operator")  # no agent.toml here: dry-run's own defaults
    commands = {
        "dry-run": ["dry-run", "--blocks", "20", "--out", str(cwd / "dry-run")],
        "demo": ["demo", "--blocks", "20", "--out", str(cwd / "demo")],
    }
    env = {**os.environ, "COLUMNS": "120"}
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "agent", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in commands.items()
    }
    finished: dict[str, Finished] = {}
    try:
        for name, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=170)
            report_file = cwd / name / "report.json"
            report = json.loads(report_file.read_text()) if report_file.is_file() else {}
            finished[name] = Finished(proc.returncode, stdout, stderr, report)
        yield finished
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def _assert_profitable_arbitrage(result: Finished) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    report = result.report
    assert report["profitable_arbitrages"] >= 1, report
    assert report["realised_profit_usd"] > 0
    assert report["exact_trades"] >= 1  # realised == predicted to the wei where none raced it
    # Simulated traders share blocks with the agent, so a trade can land behind one of their
    # swaps and realise a little less than predicted; the slippage floor bounds how much.
    assert report["realised_profit_usd"] == pytest.approx(report["predicted_profit_usd"], rel=0.01)
    assert Path(report["equity_png"]).is_file()


def test_dry_run_on_a_fresh_devnet_reports_an_executed_profitable_arbitrage(
    rehearsals: dict[str, Finished],
) -> None:
    result = rehearsals["dry-run"]
    _assert_profitable_arbitrage(result)
    printed = json.loads(result.stdout.strip().splitlines()[-1])  # the last line is the report
    assert printed == result.report
    assert printed["blocks"] == 20


def test_demo_reports_an_executed_profitable_arbitrage(rehearsals: dict[str, Finished]) -> None:
    result = rehearsals["demo"]
    _assert_profitable_arbitrage(result)
    assert "profitable arbitrages" in result.stdout
    assert "exact" in result.stdout  # the trades table: predicted vs realised per trade
    # The operator console ran beside it, its token only in the printed URL's fragment.
    assert re.search(r"Dashboard: http://127\.0\.0\.1:\d+/#token=[\w-]{32,}", result.stdout)
    assert "token" not in result.stderr
