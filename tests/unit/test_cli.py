"""The CLI as an operator runs it: the installed console script, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI = REPO_ROOT / ".venv" / "bin" / "defi-agent"
SECRET = "sk-live-0c8e6f4a2d5b3e7a1c9f"


def run(
    *args: str, cwd: Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # A clean environment: the operator's real keys must not change what the tests see.
    env = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"}}
    env.update(extra_env or {})
    command = [str(CLI)] if CLI.exists() else [sys.executable, "-m", "agent"]
    return subprocess.run(
        [*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def write_deployment(path: Path, rpc_url: str = "http://127.0.0.1:45678") -> None:
    path.write_text(
        json.dumps(
            {
                "chain_id": 31337,
                "rpc_url": rpc_url,
                "addresses": {},
                "tokens": {
                    "WETH": {
                        "address": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
                        "decimals": 18,
                    },
                    "USDC": {
                        "address": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
                        "decimals": 6,
                    },
                },
                "pools": [],
            }
        )
    )


def init_for_local_devnet(directory: Path) -> Path:
    """`init`, then point the config at a deployment file inside ``directory``."""
    assert run("init", "--dir", str(directory), cwd=directory).returncode == 0
    write_deployment(directory / "devnet.json")
    config = directory / "agent.toml"
    lines = [
        'deployment_file = "devnet.json"' if line.startswith("# deployment_file =") else line
        for line in config.read_text().splitlines()
    ]
    config.write_text("\n".join(lines) + "\n")
    return config


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = run("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("init", "config", "keys", "devnet", "executor"):
        assert command in result.stdout


def test_version(tmp_path: Path) -> None:
    result = run("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("defi-agent ")


def test_unknown_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run("frobnicate", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_init_writes_annotated_config_and_env_example(tmp_path: Path) -> None:
    target = tmp_path / "deploy"
    result = run("init", "--dir", str(target), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    config_text = (target / "agent.toml").read_text()
    assert 'mode = "fork"' in config_text
    assert config_text.count("\n# ") > 50  # annotated: comments explain the fields
    env_example = (target / ".env.example").read_text()
    assert "ONEINCH_API_KEY=\n" in env_example
    assert "DEFI_AGENT_KEYSTORE_PASSWORD=\n" in env_example


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    assert run("init", "--dir", str(tmp_path), cwd=tmp_path).returncode == 0
    (tmp_path / "agent.toml").write_text("# my edits\n")
    refused = run("init", "--dir", str(tmp_path), cwd=tmp_path)
    assert refused.returncode == 2
    assert "--force" in refused.stderr
    assert (tmp_path / "agent.toml").read_text() == "# my edits\n"
    forced = run("init", "--dir", str(tmp_path), "--force", cwd=tmp_path)
    assert forced.returncode == 0
    assert "[chain]" in (tmp_path / "agent.toml").read_text()


def test_init_in_a_checkout_writes_what_is_missing_and_keeps_the_rest(tmp_path: Path) -> None:
    # A checkout ships .env.example; the operator's agent.toml is not there yet.
    (tmp_path / ".env.example").write_text("# the repository's own\n")
    first = run("init", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "[chain]" in (tmp_path / "agent.toml").read_text()
    assert (tmp_path / ".env.example").read_text() == "# the repository's own\n"
    # Running it again changes nothing and fails nothing.
    again = run("init", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "nothing to write" in again.stdout


def test_config_check_prints_redacted_effective_config(tmp_path: Path) -> None:
    config = init_for_local_devnet(tmp_path)
    text = config.read_text().replace(
        "[feeds.oneinch]\nenabled = false", "[feeds.oneinch]\nenabled = true"
    )
    config.write_text(text)
    (tmp_path / ".env").write_text(f"ONEINCH_API_KEY={SECRET}\n")
    # --offline: this devnet is not running (reachability has its own test)
    result = run("config", "check", "--config", str(config), "--offline", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'rpc_urls = ["http://127.0.0.1:45678"]' in result.stdout
    assert 'api_key = "**********"' in result.stdout
    assert SECRET not in result.stdout + result.stderr
    as_json = run("config", "check", "--config", str(config), "--json", "--offline", cwd=tmp_path)
    assert json.loads(as_json.stdout)["feeds"]["oneinch"]["api_key"] == "**********"


def test_bad_config_exits_2_naming_each_field(tmp_path: Path) -> None:
    config = init_for_local_devnet(tmp_path)
    text = config.read_text()
    text = text.replace("max_slippage_bps = 100", "max_slippage_bps = 20000")
    text = text.replace("[feeds.coingecko]\n", f'[feeds.coingecko]\napikey = "{SECRET}"\n')
    config.write_text(text)
    result = run("config", "check", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "risk.max_slippage_bps: must be <= 10000 (got 20000)" in result.stderr
    assert "feeds.coingecko.apikey: unknown key; did you mean 'api_key'?" in result.stderr
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert result.stdout == ""


def test_missing_env_var_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('[chain]\nname = "base"\nchain_id = 8453\nrpc_urls = ["${BASE_RPC_URL}"]\n')
    result = run("config", "check", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "chain.rpc_urls[0]: environment variable BASE_RPC_URL is not set" in result.stderr
    with_env = run(
        "config",
        "check",
        "--config",
        str(config),
        cwd=tmp_path,
        extra_env={"BASE_RPC_URL": f"https://base.provider.example/{SECRET}"},
    )
    # It loads; the endpoint does not answer (no such host), named without its secret path.
    assert with_env.returncode == 2
    assert "chain.rpc_urls: base.provider.example is unreachable" in with_env.stderr
    assert SECRET not in with_env.stdout + with_env.stderr


def test_config_check_catches_what_run_refuses(tmp_path: Path) -> None:
    config = init_for_local_devnet(tmp_path)
    text = config.read_text().replace('mode = "fork"', 'mode = "demo"')
    text = text.replace("[wallet]\n", '[wallet]\npassword_file = "missing-password.txt"\n')
    text = text.replace("max_input_usd = 10000.0", "max_input_usd = 50000.0")
    config.write_text(text)
    result = run("config", "check", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert 'execution.mode: "demo" is only for `defi-agent demo`' in result.stderr
    assert "127.0.0.1:45678 is unreachable" in result.stderr
    assert "wallet.password_file:" in result.stderr and "does not exist" in result.stderr
    assert "note: strategies.arbitrage.max_input_usd (50,000 USD) is above" in result.stderr
    started = run("run", "--config", str(config), cwd=tmp_path)
    assert started.returncode == 2 and '"demo" is what `defi-agent demo` runs' in started.stderr


@pytest.mark.parametrize(
    ("raised", "exit_code"),
    [
        ("WalletError('wrong keystore password')", 2),
        ("ConfigError('risk.cooldown_s: must be >= 0')", 2),
        ("RateLimitedError('1inch said 429')", 1),
        ("SimulationRevert('INSUFFICIENT_OUTPUT_AMOUNT')", 1),
        ("KeyboardInterrupt()", 130),
    ],
)
def test_errors_map_to_exit_codes_without_tracebacks(
    tmp_path: Path, raised: str, exit_code: int
) -> None:
    # A throwaway command, registered in a child process so the shared app stays untouched.
    script = (
        "import sys\n"
        "from agent.cli import app, main\n"
        "from agent.errors import *\n"
        "@app.command('boom')\n"
        "def boom() -> None:\n"
        f"    raise {raised}\n"
        "sys.exit(main(['boom']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == exit_code
    assert "Traceback" not in result.stderr
    if "'" in raised:  # the message reaches the operator, on one line
        assert result.stderr.startswith("error: ")
        assert raised.split("'")[1] in result.stderr.splitlines()[0]


@pytest.mark.parametrize("args", [("config", "check", "--config", "absent.toml")])
def test_missing_config_file_exits_2(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert "defi-agent init" in result.stderr


def test_busy_metrics_port_is_a_one_line_config_error(tmp_path: Path) -> None:
    import socket

    config = init_for_local_devnet(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config.write_text(config.read_text().replace("port = 9108", f"port = {port}"))
        result = run("run", "--config", str(config), "--mode", "paper", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: metrics.port:") and str(port) in last


def test_status_and_report_on_a_journal_without_runs_and_bad_run_choices(tmp_path: Path) -> None:
    config = init_for_local_devnet(tmp_path)
    status = run("status", "--config", str(config), cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "no run recorded" in status.stdout
    report = run("report", "--config", str(config), "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert json.loads((tmp_path / "r" / "report.json").read_text())["trades"] == []

    unknown = run("status", "--config", str(config), "--run", "5", cwd=tmp_path)
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines()[-1] == (
        "error: --run 5: not in the journal (no run recorded)"
    )
    both = run("report", "--config", str(config), "--run", "1", "--all", cwd=tmp_path)
    assert both.returncode == 2
    assert "--run and --all: pick one" in both.stderr and "Traceback" not in both.stderr
