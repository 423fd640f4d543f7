"""`defi-agent devnet up` as an operator runs it: prints an RPC URL and addresses, answers a plain
JSON-RPC eth_call on the canonical Multicall3, and Ctrl-C stops it (and its Anvil) cleanly."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "defi-agent")


def _rpc(url: str, method: str, params: list[object]) -> object:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())["result"]


def _rpc_refused(url: str) -> bool:
    try:
        _rpc(url, "eth_blockNumber", [])
    except OSError:
        return True
    return False


def test_devnet_up_serves_multicall3_and_stops_on_ctrl_c() -> None:
    name = f"cli-test-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [CLI, "devnet", "up", "--name", name],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        output = "".join(lines)
        match = re.search(r"RPC URL: (http://127\.0\.0\.1:\d+)", output)
        assert match, output
        rpc_url = match.group(1)
        assert "uniswap_v3.quoter_v2" in output and "multicall3" in output

        # getBlockNumber() on the canonical Multicall3 address, as any client would ask it.
        block = _rpc(
            rpc_url,
            "eth_call",
            [{"to": "0xcA11bde05977b3631167028862bE2a173976CA11", "data": "0x42cbb15c"}, "latest"],
        )
        assert isinstance(block, str)
        assert int(block, 16) == int(str(_rpc(rpc_url, "eth_blockNumber", [])), 16)
        deployment = json.loads((ROOT / "anvil" / "deployments" / f"{name}.json").read_text())
        assert deployment["rpc_url"] == rpc_url

        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, rest
        assert "devnet stopped" in rest
        assert _rpc_refused(rpc_url)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        (ROOT / "anvil" / "deployments" / f"{name}.json").unlink(missing_ok=True)


def test_devnet_up_replica_serves_base_at_its_chain_id_until_devnet_down() -> None:
    proc = subprocess.Popen(
        [CLI, "devnet", "up", "--replica", "base"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        output = "".join(lines)
        match = re.search(r"RPC URL: (http://127\.0\.0\.1:\d+)", output)
        assert match, output
        rpc_url = match.group(1)
        assert 'name = "base", chain_id = 8453' in output and "no deployment_file" in output
        assert _rpc(rpc_url, "eth_chainId", []) == hex(8453)
        swap_router02 = "0x2626664c2603336E57B271c5C0b26F421741e481"
        assert len(str(_rpc(rpc_url, "eth_getCode", [swap_router02, "latest"]))) > 2

        down = subprocess.run(
            [CLI, "devnet", "down", "--name", "base"], capture_output=True, text=True, timeout=30
        )
        assert "is stopping" in down.stdout, down.stdout + down.stderr
        rest, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, rest
        assert _rpc_refused(rpc_url)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
