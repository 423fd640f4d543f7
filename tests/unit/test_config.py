"""Config loading: good files load; every bad field is named by its path; secrets never leak."""

from __future__ import annotations

import json
import os
import re
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from agent.config.models import AgentConfig, render_config_template, render_env_example
from agent.errors import ConfigError
from agent.redaction import REDACTED, redact_url

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk-live-7f3a9c1e5b2d4a6f8e0c"  # stands for any API key / token / webhook


def write_deployment(directory: Path, rpc_url: str = "http://127.0.0.1:43210") -> Path:
    path = directory / "devnet.json"
    path.write_text(
        json.dumps(
            {
                "name": "devnet",
                "chain_id": 31337,
                "rpc_url": rpc_url,
                "addresses": {"multicall3": "0xcA11bde05977b3631167028862bE2a173976CA11"},
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
    return path


def write_config(directory: Path, text: str) -> Path:
    path = directory / "agent.toml"
    path.write_text(text)
    return path


def load(directory: Path, text: str, environ: dict[str, str] | None = None) -> AgentConfig:
    return AgentConfig.load(write_config(directory, text), environ=environ or {})


def problems_of(directory: Path, text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load(directory, text, environ)
    return str(caught.value)


PUBLIC = """
[chain]
name = "ethereum"
chain_id = 1
rpc_urls = ["https://rpc-a.example", "https://rpc-b.example"]
"""


# --- good files ------------------------------------------------------------------------------


def test_init_template_loads_for_the_devnet(tmp_path: Path) -> None:
    write_deployment(tmp_path)
    cfg = load(tmp_path, render_config_template("devnet.json"))
    assert cfg.chain.name == "devnet"
    assert cfg.chain.chain_id == 31337
    # The devnet's URL changes on every start, so it comes from the deployment file.
    assert cfg.chain.rpc_urls == ["http://127.0.0.1:43210"]
    assert cfg.execution.mode == "fork"
    assert cfg.strategies.arbitrage.enabled
    # Relative paths are relative to the config file's directory.
    assert cfg.wallet.keystore == (tmp_path / "keys" / "keystore.json").resolve()
    assert cfg.risk.kill_switch_file == (tmp_path / "data" / "KILL").resolve()
    assert cfg.store.url == f"sqlite+aiosqlite:///{(tmp_path / 'data' / 'agent.db').resolve()}"
    # Unset ${VAR:-} secrets mean "not configured", not an empty key.
    assert cfg.feeds.oneinch.api_key is None
    assert cfg.alerts.telegram.chat_id is None


def test_template_documents_every_setting() -> None:
    """Every field of every section appears in the annotated template, set or commented out."""
    # Uncomment example settings ("# ws_url = ...", "# [feeds.cex.credentials.binance]") so
    # the parsed document holds every key the template mentions.
    example_line = re.compile(r"^# (?=\[[a-z_.]+\]$|[A-Za-z_]+ = )", re.M)
    document = tomllib.loads(example_line.sub("", render_config_template()))
    missing = [path for path in _leaf_paths(AgentConfig) if not _present(document, path)]
    assert missing == []


def _leaf_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths.extend(_leaf_paths(annotation, f"{prefix}{name}."))
        else:
            paths.append(f"{prefix}{name}")
    return paths


def _present(document: dict[str, Any], dotted: str) -> bool:
    node: Any = document
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def test_chain_addresses_follow_the_configured_chain(tmp_path: Path) -> None:
    write_deployment(tmp_path)
    devnet = load(tmp_path, render_config_template("devnet.json"))
    assert devnet.chain_addresses().weth == "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    assert load(tmp_path, PUBLIC).chain_addresses().usdc == (
        "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
    )


def test_public_chain_with_failover_urls(tmp_path: Path) -> None:
    cfg = load(tmp_path, PUBLIC)
    assert cfg.chain.rpc_urls == ["https://rpc-a.example", "https://rpc-b.example"]
    assert cfg.execution.mode == "paper"  # the safe default when the file does not say


def test_env_expansion_real_env_wins_over_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("RPC_URL=https://from-dotenv.example\nPORT=9200\n")
    text = PUBLIC.replace(
        'rpc_urls = ["https://rpc-a.example", "https://rpc-b.example"]', 'rpc_urls = ["${RPC_URL}"]'
    )
    text += '\n[metrics]\nport = "${PORT}"\nhost = "${METRICS_HOST:-127.0.0.1}"\n'
    cfg = load(tmp_path, text, environ={"RPC_URL": "https://from-env.example"})
    assert cfg.chain.rpc_urls == ["https://from-env.example"]
    assert cfg.metrics.port == 9200  # from .env, converted to int by validation
    assert cfg.metrics.host == "127.0.0.1"  # default after :-
    assert "PORT" not in os.environ  # .env never leaks into the process environment


def test_default_applies_to_empty_variables_and_dollar_escape(tmp_path: Path) -> None:
    text = PUBLIC + (
        '\n[logging]\nlevel = "${LOG_LEVEL:-warning}"\n[alerts.discord]\nusername = "cost $${X}"\n'
    )
    cfg = load(tmp_path, text, environ={"LOG_LEVEL": ""})
    assert cfg.logging.level == "warning"
    assert cfg.alerts.discord.username == "cost ${X}"


def test_gwei_caps_convert_to_exact_wei(tmp_path: Path) -> None:
    text = PUBLIC + (
        "\n[execution]\nmax_fee_gwei = 0.05\nmax_priority_fee_gwei = 0.001\n"
        "[risk]\nmax_gas_price_gwei = 30\n"
    )
    cfg = load(tmp_path, text)
    assert cfg.execution.max_fee_gwei == Decimal("0.05")
    assert cfg.execution.max_fee_wei == 50_000_000
    assert cfg.execution.max_priority_fee_wei == 1_000_000
    assert cfg.risk.max_gas_price_wei == 30 * 10**9


def test_dca_schedule_is_interval_or_cron(tmp_path: Path) -> None:
    cron_only = load(tmp_path, PUBLIC + '\n[strategies.dca]\ncron = "0 9 * * 1"\n')
    assert cron_only.strategies.dca.cron == "0 9 * * 1"
    assert cron_only.strategies.dca.interval_s is None
    assert load(tmp_path, PUBLIC).strategies.dca.interval_s == 86_400.0
    both = problems_of(
        tmp_path, PUBLIC + '\n[strategies.dca]\ninterval_s = 60\ncron = "0 9 * * 1"\n'
    )
    assert "strategies.dca.cron: set only one of interval_s and cron" in both


def test_redacted_dump_round_trips(tmp_path: Path) -> None:
    cfg = load(
        tmp_path, PUBLIC + "\n[execution]\nmax_fee_gwei = 0.05\nmax_priority_fee_gwei = 0.01\n"
    )
    for fmt in ("toml", "json"):
        text = cfg.redacted_dump(fmt)  # type: ignore[arg-type]
        document = tomllib.loads(text) if fmt == "toml" else _drop_nulls(json.loads(text))
        reloaded = AgentConfig.from_mapping(document, environ={})
        assert reloaded.model_dump() == cfg.model_dump()


def _drop_nulls(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _drop_nulls(v) for k, v in node.items() if v is not None}
    return node


def test_keystore_password_sources(tmp_path: Path) -> None:
    password_file = tmp_path / "password.txt"
    password_file.write_text("from-file\n")
    text = PUBLIC + f'\n[wallet]\npassword_env = "MY_PW"\npassword_file = "{password_file}"\n'
    from_env = load(tmp_path, text, environ={"MY_PW": "from-env"})
    assert from_env.keystore_password() is not None
    assert from_env.keystore_password().get_secret_value() == "from-env"  # type: ignore[union-attr]
    from_file = load(tmp_path, text)
    assert from_file.keystore_password().get_secret_value() == "from-file"  # type: ignore[union-attr]
    (tmp_path / ".env").write_text("DEFI_AGENT_KEYSTORE_PASSWORD=from-dotenv\n")
    from_dotenv = load(tmp_path, PUBLIC)
    assert from_dotenv.keystore_password().get_secret_value() == "from-dotenv"  # type: ignore[union-attr]
    (tmp_path / ".env").unlink()
    assert load(tmp_path, PUBLIC).keystore_password() is None


# --- bad files: every problem by its dotted path -------------------------------------------


def test_out_of_range_names_field_limit_and_value(tmp_path: Path) -> None:
    message = problems_of(tmp_path, PUBLIC + "\n[risk]\nmax_slippage_bps = 20000\n")
    assert "risk.max_slippage_bps: must be <= 10000 (got 20000)" in message


def test_wrong_type(tmp_path: Path) -> None:
    message = problems_of(
        tmp_path, PUBLIC + '\n[risk]\nmax_trade_usd = "lots"\n[metrics]\nenabled = "maybe"\n'
    )
    assert "risk.max_trade_usd: must be a number (got 'lots')" in message
    assert "metrics.enabled: must be true or false (got 'maybe')" in message


def test_unknown_keys_are_errors_with_a_suggestion(tmp_path: Path) -> None:
    message = problems_of(tmp_path, PUBLIC + "poll_intervl_s = 2\n[risks]\ncooldown_s = 1\n")
    assert "chain.poll_intervl_s: unknown key; did you mean 'poll_interval_s'?" in message
    assert "risks: unknown key; did you mean 'risk'?" in message


def test_missing_env_var_names_field_and_variable(tmp_path: Path) -> None:
    text = PUBLIC + '\n[feeds.oneinch]\nenabled = true\napi_key = "${ONEINCH_API_KEY}"\n'
    message = problems_of(tmp_path, text)
    assert "feeds.oneinch.api_key: environment variable ONEINCH_API_KEY is not set" in message
    # The same field is not reported twice (once for the variable, once for the missing key).
    assert message.count("feeds.oneinch.api_key") == 1


def test_several_errors_reported_at_once(tmp_path: Path) -> None:
    text = """
[chain]
name = "ethereum"
chain_id = 5
rpc_urls = []
[execution]
mode = "yolo"
deadline_s = -1
[risk]
max_drawdown_pct = 150
token_allowlist = ["WETH", "0x1234"]
[strategies.grid]
lower_price = 3000
upper_price = 2000
[alerts.telegram]
chat_id = "not-a-number"
"""
    message = problems_of(tmp_path, text)
    expected = [
        "chain.chain_id: must be 1 for chain 'ethereum' (got 5)",
        "chain.rpc_urls: must have at least 1 item(s)",
        "execution.mode: must be one of 'live', 'paper', 'fork' or 'demo' (got 'yolo')",
        "execution.deadline_s: must be > 0 (got -1)",
        "risk.max_drawdown_pct: must be <= 100 (got 150)",
        "risk.token_allowlist[1]: must be a 0x-prefixed 20-byte hex address (got '0x1234')",
        "strategies.grid.upper_price: must be > lower_price (3000) (got 2000)",
        "alerts.telegram.chat_id: must be an integer (got 'not-a-number')",
    ]
    for line in expected:
        assert line in message
    assert message.splitlines()[0].endswith(f"{len(expected)} invalid settings:")


def test_cross_section_rules(tmp_path: Path) -> None:
    text = (
        PUBLIC
        + """
[execution]
slippage_bps = 300
max_fee_gwei = 10
max_priority_fee_gwei = 20
[risk]
max_slippage_bps = 100
max_trade_usd = 50000
max_total_exposure_usd = 10000
[strategies.cex_dex]
enabled = true
"""
    )
    message = problems_of(tmp_path, text)
    assert "execution.max_priority_fee_gwei: must be <= max_fee_gwei (10) (got 20)" in message
    assert "risk.max_trade_usd: must be <= max_total_exposure_usd (10000) (got 50000)" in message
    fixed = text.replace("max_priority_fee_gwei = 20", "max_priority_fee_gwei = 1").replace(
        "max_trade_usd = 50000", "max_trade_usd = 500"
    )
    message = problems_of(tmp_path, fixed)
    assert "execution.slippage_bps: must be <= risk.max_slippage_bps (100) (got 300)" in message
    assert "strategies.cex_dex.enabled: needs feeds.cex.enabled = true" in message


def test_bad_checksum_address(tmp_path: Path) -> None:
    message = problems_of(
        tmp_path, PUBLIC + '\n[wallet]\naddress = "0x5fbDB2315678afecb367f032d93F642f64180aa3"\n'
    )
    assert (
        "wallet.address: bad EIP-55 checksum (expected 0x5FbDB2315678afecb367f032d93F642f64180aa3)"
        in message
    )


def test_devnet_without_rpc_urls_needs_its_deployment(tmp_path: Path) -> None:
    message = problems_of(tmp_path, '[chain]\nname = "devnet"\ndeployment_file = "missing.json"\n')
    assert "chain.rpc_urls: not set, and the devnet deployment file" in message
    assert "defi-agent devnet up" in message


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    assert "invalid TOML" in problems_of(tmp_path, "[chain\nname = 1\n")
    with pytest.raises(ConfigError, match="defi-agent init"):
        AgentConfig.load(tmp_path / "nope.toml", environ={})


# --- secrets ---------------------------------------------------------------------------------

SECRETS_TOML = (
    PUBLIC
    + """
[feeds.oneinch]
enabled = true
api_key = "${ONEINCH_API_KEY}"
[feeds.coingecko]
plan = "pro"
api_key = "${COINGECKO_API_KEY}"
[feeds.x]
bearer_token = "${X_BEARER_TOKEN}"
[feeds.cex.credentials.binance]
api_key = "${BINANCE_API_KEY}"
secret = "${BINANCE_API_SECRET}"
[alerts.telegram]
enabled = true
bot_token = "${TELEGRAM_BOT_TOKEN}"
chat_id = "${TELEGRAM_CHAT_ID}"
[alerts.discord]
enabled = true
webhook_url = "${DISCORD_WEBHOOK_URL}"
"""
)


def secrets_env() -> dict[str, str]:
    return {
        "ONEINCH_API_KEY": SECRET + "-1inch",
        "COINGECKO_API_KEY": SECRET + "-cg",
        "X_BEARER_TOKEN": SECRET + "-x",
        "BINANCE_API_KEY": SECRET + "-bk",
        "BINANCE_API_SECRET": SECRET + "-bs",
        "TELEGRAM_BOT_TOKEN": SECRET + "-tg",
        "TELEGRAM_CHAT_ID": "-1001234567",
        "DISCORD_WEBHOOK_URL": f"https://discord.com/api/webhooks/123/{SECRET}",
        "DEFI_AGENT_KEYSTORE_PASSWORD": SECRET + "-pw",
    }


def test_secrets_load_but_never_show(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in secrets_env().items()))
    cfg = load(tmp_path, SECRETS_TOML)
    assert cfg.feeds.oneinch.api_key is not None
    assert cfg.feeds.oneinch.api_key.get_secret_value() == SECRET + "-1inch"
    assert cfg.alerts.telegram.chat_id == -1001234567
    credentials = cfg.feeds.cex.credentials["binance"]
    assert credentials.secret is not None and credentials.secret.get_secret_value().endswith("-bs")
    shown = [repr(cfg), str(cfg), cfg.redacted_dump("toml"), cfg.redacted_dump("json")]
    for text in shown:
        assert SECRET not in text
    assert REDACTED in shown[2] and REDACTED in shown[3]


def test_rpc_url_keys_are_redacted_in_dumps_and_errors(tmp_path: Path) -> None:
    text = PUBLIC.replace("https://rpc-a.example", f"https://eth.provider.example/v2/{SECRET}")
    cfg = load(tmp_path, text)
    dump = cfg.redacted_dump()
    assert SECRET not in dump
    assert f"https://eth.provider.example/{REDACTED}" in dump
    bad = PUBLIC.replace("https://rpc-a.example", f"ftp://user:{SECRET}@host/v2/{SECRET}")
    message = problems_of(tmp_path, bad)
    assert "chain.rpc_urls[0]: must be a URL with scheme" in message
    assert SECRET not in message


def test_errors_never_echo_secret_values(tmp_path: Path) -> None:
    text = (
        PUBLIC
        + f"""
[feeds.coingecko]
apikey = "{SECRET}"
[feeds.x]
bearer_token = 12345678901234
[alerts.discord]
webhook_url = "not a url {SECRET}"
[alerts.telegram]
bot_token = "${{1BAD:-{SECRET}}}"
"""
    )
    message = problems_of(tmp_path, text)
    assert "feeds.coingecko.apikey: unknown key; did you mean 'api_key'?" in message
    assert "feeds.x.bearer_token: must be a string" in message
    assert "alerts.discord.webhook_url: must be an http(s) webhook URL" in message
    assert "alerts.telegram.bot_token: malformed ${...} reference" in message
    assert SECRET not in message
    assert "12345678901234" not in message


def test_redact_url() -> None:
    assert redact_url("http://127.0.0.1:8545") == "http://127.0.0.1:8545"
    assert redact_url("wss://host.example/ws/KEY?x=1") == f"wss://host.example/{REDACTED}"
    database = "postgresql+asyncpg://bob:pw@db:5432/agent"
    assert redact_url(database, hide_path=False) == f"postgresql+asyncpg://{REDACTED}@db:5432/agent"
    assert redact_url("ftp://bob:pw@host/KEY") == f"ftp://{REDACTED}@host/{REDACTED}"
    assert redact_url("https://api.x.com/2", hide_path=False) == "https://api.x.com/2"


# --- templates -------------------------------------------------------------------------------


def test_env_example_lists_every_template_variable_without_values() -> None:
    env_example = render_env_example()
    assert (REPO_ROOT / ".env.example").read_text() == env_example
    assignments = [line for line in env_example.splitlines() if line and not line.startswith("#")]
    assert assignments and all(line.endswith("=") for line in assignments)
    names = {line[:-1] for line in assignments}
    referenced = {
        m.group(1) for m in re.finditer(r"^[^#\n]*\$\{([A-Z0-9_]+)", render_config_template(), re.M)
    }
    assert referenced <= names


def test_market_tokens_on_a_public_chain_are_registry_symbols_declared_ones_or_addresses(
    tmp_path: Path,
) -> None:
    tokens = 'tokens = ["WETH", "USDT", "LINK", "0x514910771AF9Ca656af840dff83E8264EcF986CA"]'
    problems = problems_of(tmp_path, PUBLIC + "\n[market]\n" + tokens + "\n")
    assert "market.tokens: unknown on ethereum: LINK" in problems
    assert "0x5149" not in problems  # an address is checked on chain at start-up instead
    declared = (
        PUBLIC
        + '\n[market]\ntokens = ["WETH", "USDC.e", "link"]\n'
        + '[market.token_addresses]\nLINK = "0x514910771AF9Ca656af840dff83E8264EcF986CA"\n'
    )
    arbitrum = declared.replace('"ethereum"', '"arbitrum"').replace(
        "chain_id = 1", "chain_id = 42161"
    )
    cfg = load(tmp_path, arbitrum)
    assert cfg.market.tokens == ["WETH", "USDC.e", "link"]
    assert "USDC.e" in problems_of(tmp_path, declared)  # bridged USDC is not on Ethereum


# --- submission modes ------------------------------------------------------------------------


def test_submission_defaults_to_protect_with_a_private_rpc(tmp_path: Path) -> None:
    assert load(tmp_path, PUBLIC).chain.submission_mode == "public"
    private = PUBLIC + 'submit_rpc_url = "https://rpc.flashbots.net/fast"\n'
    assert load(tmp_path, private).chain.submission_mode == "protect"


def test_bundle_mode_names_each_missing_part(tmp_path: Path) -> None:
    message = problems_of(tmp_path, PUBLIC + 'submission = "bundle"\n')
    assert "chain.relay_urls: needed for submission = 'bundle'" in message
    assert "chain.reputation_keystore: needed for submission = 'bundle'" in message
    message = problems_of(tmp_path, PUBLIC + 'submission = "protect"\n')
    assert "chain.submit_rpc_url: needed for submission = 'protect'" in message


def test_bundle_mode_refuses_the_trading_key_as_the_reputation_key(tmp_path: Path) -> None:
    bundle = (
        PUBLIC
        + 'submission = "bundle"\nrelay_urls = ["https://relay.flashbots.net"]\n'
        + 'reputation_keystore = "./keys/keystore.json"\n'
        + 'reputation_password_env = "DEFI_AGENT_KEYSTORE_PASSWORD"\n'
        + '[wallet]\nkeystore = "./keys/keystore.json"\n'
    )
    message = problems_of(tmp_path, bundle)
    assert "chain.reputation_keystore: must not be the trading key's wallet.keystore" in message
    assert "chain.reputation_password_env: must differ from wallet.password_env" in message
    good = bundle.replace(
        'reputation_keystore = "./keys/keystore.json"',
        'reputation_keystore = "./keys/reputation.json"',
    ).replace('"DEFI_AGENT_KEYSTORE_PASSWORD"', '"DEFI_AGENT_REPUTATION_PASSWORD"')
    cfg = load(tmp_path, good)
    assert cfg.chain.submission_mode == "bundle"
    assert cfg.chain.reputation_keystore == (tmp_path / "keys" / "reputation.json").resolve()


def test_a_rehearsal_sends_to_the_local_chain_only(tmp_path: Path) -> None:
    from agent.app.rehearsal import rehearsal_config

    base = tomllib.loads(
        PUBLIC
        + 'submit_rpc_url = "https://rpc.flashbots.net/fast"\nsubmission = "bundle"\n'
        + 'relay_urls = ["https://relay.flashbots.net"]\n'
        + 'reputation_keystore = "./keys/reputation.json"\n'
    )
    cfg = rehearsal_config(
        rpc_url="http://127.0.0.1:45678",
        deployment_file=None,
        workdir=tmp_path,
        arb_executor="0x" + "11" * 20,
        tokens=["WETH", "USDC"],
        base=base,
        chain="ethereum",
        chain_id=1,
    )
    assert cfg.chain.submission_mode == "public"
    assert cfg.chain.submit_rpc_url is None and cfg.chain.relay_urls == []
