"""Secrets stay secret: in config errors, in reprs, in the keystore's file mode, in the
process environment and its children. (Redirects: tests/feeds/test_feeds_http.py; Anvil's
argv and environment: tests/chain/test_anvil_secrets.py.)"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from agent.app.build import unlock_signer
from agent.config.models import AgentConfig
from agent.errors import ConfigError, WalletError
from agent.wallet.keystore import create_keystore, prompted_password, unlock_keystore

LEAKED_PASSWORD = "MyKeystorePassw0rd!"
RPC_KEY = "alchemyKey0123456789abcdef"
PG_PASSWORD = "pgS3cretPassw0rd"
REPO_ROOT = Path(__file__).resolve().parents[2]


def _problems(tmp_path: Path, toml: str, environ: dict[str, str]) -> str:
    path = tmp_path / "agent.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as raised:
        AgentConfig.load(path, environ=environ)
    return str(raised.value)


def test_a_secret_expanded_into_the_wrong_field_is_shown_as_its_reference(
    tmp_path: Path,
) -> None:
    # The operator meant password_env = "DEFI_AGENT_KEYSTORE_PASSWORD" (the variable's name).
    (tmp_path / ".env").write_text(f"CHAIN_ID_FROM_DOTENV={LEAKED_PASSWORD}\n")
    message = _problems(
        tmp_path,
        '[chain]\nname = "ethereum"\nchain_id = "${CHAIN_ID_FROM_DOTENV}"\n'
        'rpc_urls = ["https://rpc.example"]\n'
        '[wallet]\npassword_env = "${DEFI_AGENT_KEYSTORE_PASSWORD}"\n'
        '[risk]\nmax_trade_usd = "${TRADE_CAP}"\n',
        {"DEFI_AGENT_KEYSTORE_PASSWORD": LEAKED_PASSWORD, "TRADE_CAP": LEAKED_PASSWORD},
    )
    assert LEAKED_PASSWORD not in message
    assert "wallet.password_env: must be an environment variable name" in message
    assert "(got '${DEFI_AGENT_KEYSTORE_PASSWORD}')" in message
    assert "chain.chain_id: must be an integer (got '${CHAIN_ID_FROM_DOTENV}')" in message
    assert "risk.max_trade_usd: must be a number (got '${TRADE_CAP}')" in message


def test_a_validator_message_quoting_an_expanded_value_shows_the_reference(
    tmp_path: Path,
) -> None:
    message = _problems(
        tmp_path,
        '[chain]\nname = "ethereum"\nchain_id = "${CHAIN}"\nrpc_urls = ["https://rpc.example"]\n',
        {"CHAIN": "5"},
    )
    assert "chain.chain_id: must be 1 for chain 'ethereum' (got '${CHAIN}')" in message


def test_repr_of_the_config_hides_the_rpc_key_and_the_database_password() -> None:
    cfg = AgentConfig.from_mapping(
        {
            "chain": {
                "name": "ethereum",
                "chain_id": 1,
                "rpc_urls": [f"https://eth-mainnet.g.alchemy.com/v2/{RPC_KEY}"],
                "ws_url": f"wss://eth-mainnet.g.alchemy.com/v2/{RPC_KEY}",
                "submit_rpc_url": f"https://rpc.flashbots.net/fast?key={RPC_KEY}",
            },
            "store": {"url": f"postgresql+asyncpg://agent:{PG_PASSWORD}@db.internal:5432/agent"},
        }
    )
    for shown in (repr(cfg), str(cfg), repr(cfg.chain), repr(cfg.store), f"{cfg!r}"):
        assert RPC_KEY not in shown
        assert PG_PASSWORD not in shown
    assert "eth-mainnet.g.alchemy.com" in repr(cfg)  # still says which provider
    assert "db.internal:5432" in repr(cfg.store)
    # The values themselves are intact for the code that connects.
    assert cfg.chain.rpc_urls[0].endswith(RPC_KEY)
    assert PG_PASSWORD in cfg.store.url


def test_a_keystore_others_can_read_is_refused_with_the_chmod_to_run(tmp_path: Path) -> None:
    keystore = tmp_path / "keys" / "keystore.json"
    keystore.parent.mkdir()
    create_keystore(keystore, SecretStr("pw"), scrypt_n=2**4)
    keystore.chmod(0o644)
    with pytest.raises(WalletError) as refused:
        unlock_keystore(keystore, prompted_password("pw"))
    assert f"run `chmod 600 {keystore}`" in str(refused.value)

    # At the start of `defi-agent run`: exit 2, the exact command, before connecting anywhere.
    config = tmp_path / "agent.toml"
    config.write_text(
        '[chain]\nrpc_urls = ["http://127.0.0.1:9"]\n'
        f'[wallet]\nkeystore = "{keystore}"\npassword_env = "KS_PW"\n'
        '[execution]\nmode = "fork"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "agent", "run", "--config", str(config)],
        env={**os.environ, "KS_PW": "pw"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert f"chmod 600 {keystore}" in result.stderr
    assert "Traceback" not in result.stderr

    keystore.chmod(0o600)
    assert unlock_keystore(keystore, prompted_password("pw")).address


def test_the_password_leaves_the_environment_after_unlock_and_children_never_see_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keystore = tmp_path / "keys" / "keystore.json"
    keystore.parent.mkdir()
    address = create_keystore(keystore, SecretStr(LEAKED_PASSWORD), scrypt_n=2**4)
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[wallet]\nkeystore = "{keystore}"\npassword_env = "SECRETS_TEST_KS_PW"\n'
        '[chain]\nrpc_urls = ["http://127.0.0.1:9"]\n'
    )
    monkeypatch.setenv("SECRETS_TEST_KS_PW", LEAKED_PASSWORD)
    cfg = AgentConfig.load(config)  # the real process environment, as `defi-agent run` does

    assert unlock_signer(cfg).address == address

    assert "SECRETS_TEST_KS_PW" not in os.environ
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(sorted(os.environ.items()))"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert LEAKED_PASSWORD not in child.stdout
    assert "SECRETS_TEST_KS_PW" not in child.stdout
    assert stat.S_IMODE(keystore.stat().st_mode) == 0o600


def test_the_reputation_password_is_redacted_from_log_text(tmp_path: Path) -> None:
    from agent.app.logs import redactor_for

    path = tmp_path / "agent.toml"
    path.write_text(
        '[chain]\nname = "ethereum"\nchain_id = 1\nrpc_urls = ["https://rpc.example"]\n'
        'submission = "bundle"\nrelay_urls = ["https://relay.example/KEY123"]\n'
        'reputation_keystore = "./keys/reputation.json"\n'
    )
    cfg = AgentConfig.load(path, environ={"DEFI_AGENT_REPUTATION_PASSWORD": LEAKED_PASSWORD})
    redacted = redactor_for(cfg)(f"relay https://relay.example/KEY123 password {LEAKED_PASSWORD}")
    assert LEAKED_PASSWORD not in redacted and "KEY123" not in redacted
    assert "KEY123" not in cfg.redacted_dump()
