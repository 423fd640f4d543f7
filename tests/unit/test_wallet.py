"""Keystore and Signer: create, unlock, wrong password, file mode, import, and no secret leaks."""

from __future__ import annotations

import copy
import json
import logging
import os
import pickle
import stat
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from eth_account import Account
from pydantic import SecretStr

from agent.errors import WalletError
from agent.store import Journal, init_db, session_factory
from agent.wallet.keystore import (
    Signer,
    create_keystore,
    load_password,
    private_key_from_secret_text,
    prompted_password,
    read_keystore_address,
    unlock_keystore,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
FAST_SCRYPT_N = 2**12  # keystores made in-process use a cheap KDF; the CLI uses the real one
# A throwaway key: nothing secret, but the tests treat it as if it were.
KEY_HEX = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
KEY_ADDRESS = Account.from_key(bytes.fromhex(KEY_HEX)).address
PASSWORD = "correct horse battery staple 7!"
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
ANVIL_ACCOUNT_0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
ANVIL_KEY_0 = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def leaked(text: str | bytes, *secrets: str) -> list[str]:
    """The secrets (case-insensitively) present in ``text``."""
    hay = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return [s for s in secrets if s.lower() in hay.lower()]


def test_create_and_unlock_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "keystore.json"
    address = create_keystore(
        path, SecretStr(PASSWORD), bytes.fromhex(KEY_HEX), scrypt_n=FAST_SCRYPT_N
    )
    assert address == KEY_ADDRESS
    keystore = json.loads(path.read_text())
    assert keystore["version"] == 3
    assert keystore["crypto"]["kdf"] == "scrypt"
    assert leaked(path.read_text(), KEY_HEX, PASSWORD) == []
    assert read_keystore_address(path) == KEY_ADDRESS
    signer = unlock_keystore(path, prompted_password(PASSWORD))
    assert signer.address == KEY_ADDRESS


def test_new_random_key_gets_its_own_address(tmp_path: Path) -> None:
    a = create_keystore(tmp_path / "a.json", SecretStr(PASSWORD), scrypt_n=FAST_SCRYPT_N)
    b = create_keystore(tmp_path / "b.json", SecretStr(PASSWORD), scrypt_n=FAST_SCRYPT_N)
    assert a != b
    assert unlock_keystore(tmp_path / "b.json", prompted_password(PASSWORD)).address == b


def test_keystore_file_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        path = tmp_path / "nested" / "keystore.json"
        create_keystore(path, SecretStr(PASSWORD), scrypt_n=FAST_SCRYPT_N)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["keystore.json"]  # no temp file left


def test_existing_keystore_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "keystore.json"
    create_keystore(path, SecretStr(PASSWORD), bytes.fromhex(KEY_HEX), scrypt_n=FAST_SCRYPT_N)
    before = path.read_bytes()
    with pytest.raises(WalletError, match="already exists"):
        create_keystore(path, SecretStr("other"), scrypt_n=FAST_SCRYPT_N)
    assert path.read_bytes() == before


def test_wrong_password_is_a_clear_wallet_error(tmp_path: Path) -> None:
    path = tmp_path / "keystore.json"
    create_keystore(path, SecretStr(PASSWORD), bytes.fromhex(KEY_HEX), scrypt_n=FAST_SCRYPT_N)
    wrong = "not the password at all"
    with pytest.raises(WalletError) as info:
        unlock_keystore(path, prompted_password(wrong))
    assert str(info.value) == f"wrong keystore password for {path}"
    rendered = "".join(traceback.format_exception(info.value))
    assert leaked(rendered, KEY_HEX, PASSWORD, wrong) == []


def test_missing_or_garbage_keystore(tmp_path: Path) -> None:
    with pytest.raises(WalletError, match="does not exist"):
        read_keystore_address(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(WalletError, match="not valid JSON"):
        unlock_keystore(tmp_path / "bad.json", prompted_password(PASSWORD))


@pytest.mark.parametrize("text", [KEY_HEX, "0x" + KEY_HEX, f"  0x{KEY_HEX.upper()}\n"])
def test_import_hex_key(text: str) -> None:
    assert private_key_from_secret_text(text) == bytes.fromhex(KEY_HEX)


def test_import_mnemonic_derives_the_standard_first_account() -> None:
    key = private_key_from_secret_text(f"  {ANVIL_MNEMONIC}\n")
    assert key == bytes.fromhex(ANVIL_KEY_0)
    assert Signer(key).address == ANVIL_ACCOUNT_0


def test_bad_import_text_is_refused_without_echoing_it() -> None:
    bad_mnemonic = "test test test test test test test test test test test test"  # bad checksum
    with pytest.raises(WalletError) as info:
        private_key_from_secret_text(bad_mnemonic)
    assert "test test" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(WalletError) as info2:
        private_key_from_secret_text(KEY_HEX[:-2])
    assert leaked(str(info2.value), KEY_HEX[:-2]) == []


def test_signer_hides_the_key_and_signs() -> None:
    signer = Signer(bytes.fromhex(KEY_HEX))
    assert repr(signer) == str(signer) == f"Signer(address={KEY_ADDRESS})"
    assert not any(
        KEY_HEX in repr(getattr(signer, n, "")) for n in dir(signer) if not n.startswith("_Signer")
    )
    with pytest.raises(TypeError):
        pickle.dumps(signer)
    with pytest.raises(TypeError):
        copy.deepcopy(signer)
    tx = {
        "type": 2,
        "chainId": 31337,
        "nonce": 0,
        "to": ANVIL_ACCOUNT_0,
        "value": 1,
        "gas": 21_000,
        "maxFeePerGas": 2 * 10**9,
        "maxPriorityFeePerGas": 10**9,
        "data": b"",
    }
    signed = signer.sign_transaction(tx)
    assert Account.recover_transaction(signed.raw) == KEY_ADDRESS
    assert signed.hash.startswith("0x") and len(signed.hash) == 66
    with pytest.raises(WalletError, match="not the signer"):
        signer.sign_transaction({**tx, "from": ANVIL_ACCOUNT_0})


def test_password_sources(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert load_password("PW_ENV", None, environ={}) is None
    from_env = load_password("PW_ENV", None, environ={"PW_ENV": PASSWORD})
    assert from_env is not None and from_env.unattended and from_env.source == "env"
    assert PASSWORD not in repr(from_env)

    secret_file = tmp_path / "pw.txt"
    secret_file.write_text(PASSWORD + "\n")
    secret_file.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        from_file = load_password(None, secret_file, environ={})
    assert from_file is not None and from_file.secret.get_secret_value() == PASSWORD
    assert "readable by group/others" in caplog.text

    caplog.clear()
    secret_file.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        load_password(None, secret_file, environ={})
    assert caplog.text == ""


async def test_secrets_never_reach_logs_or_the_db(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "keystore.json"
    create_keystore(path, SecretStr(PASSWORD), bytes.fromhex(KEY_HEX), scrypt_n=FAST_SCRYPT_N)
    env_password = load_password("PW", None, environ={"PW": PASSWORD})
    assert env_password is not None
    signer = unlock_keystore(path, env_password)
    assert "UNATTENDED SIGNING" in caplog.text  # the loud warning for env/file passwords
    try:
        unlock_keystore(path, prompted_password(PASSWORD + "x"))
    except WalletError as exc:
        logging.getLogger("test").exception("unlock failed: %s", exc)

    signed = signer.sign_transaction(
        {
            "type": 2,
            "chainId": 31337,
            "nonce": 5,
            "to": ANVIL_ACCOUNT_0,
            "value": 0,
            "gas": 21_000,
            "maxFeePerGas": 10**9,
            "maxPriorityFeePerGas": 10**9,
            "data": b"",
        }
    )
    db = tmp_path / "agent.db"
    engine = await init_db(f"sqlite:///{db}")
    try:
        await Journal(session_factory(engine)).record_signed_tx(
            tx_hash=signed.hash,
            raw_tx=signed.raw,
            chain_id=31337,
            sender=signer.address,
            nonce=5,
            purpose="cancel",
            gas_limit=21_000,
            max_fee_per_gas_wei=10**9,
            max_priority_fee_per_gas_wei=10**9,
            to_address=ANVIL_ACCOUNT_0,
        )
    finally:
        await engine.dispose()

    db_bytes = read_db_files(tmp_path)
    assert leaked(caplog.text, KEY_HEX, PASSWORD) == []
    assert bytes.fromhex(KEY_HEX) not in db_bytes
    assert leaked(db_bytes, KEY_HEX, PASSWORD) == []


def read_db_files(directory: Path) -> bytes:
    """The SQLite file and its WAL/SHM side files, concatenated."""
    return b"".join(p.read_bytes() for p in sorted(directory.glob("agent.db*")))


def run_cli(
    args: list[str], cwd: Path, stdin: str = "", password: str | None = PASSWORD
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DEFI_AGENT_KEYSTORE_PASSWORD"}
    if password is not None:
        env["DEFI_AGENT_KEYSTORE_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        check=False,
        timeout=120,
    )


def test_cli_keys_commands_never_print_secrets(tmp_path: Path) -> None:
    keystore = tmp_path / "ks" / "keystore.json"
    outputs: list[str] = []

    imported = run_cli(
        ["keys", "import", "--keystore", str(keystore)], tmp_path, "0x" + KEY_HEX + "\n"
    )
    outputs += [imported.stdout, imported.stderr]
    assert imported.returncode == 0, imported.stderr
    assert KEY_ADDRESS in imported.stdout
    assert stat.S_IMODE(keystore.stat().st_mode) == 0o600

    address = run_cli(["keys", "address", "--keystore", str(keystore)], tmp_path, password=None)
    outputs += [address.stdout, address.stderr]
    assert (address.returncode, address.stdout.strip()) == (0, KEY_ADDRESS)

    verified = run_cli(["keys", "verify", "--keystore", str(keystore)], tmp_path)
    outputs += [verified.stdout, verified.stderr]
    assert verified.returncode == 0
    assert "UNATTENDED SIGNING" in verified.stderr

    wrong = run_cli(
        ["keys", "verify", "--keystore", str(keystore)], tmp_path, password="nope-" + PASSWORD
    )
    outputs += [wrong.stdout, wrong.stderr]
    assert wrong.returncode == 2
    assert f"wrong keystore password for {keystore}" in wrong.stderr

    again = run_cli(["keys", "import", "--keystore", str(keystore)], tmp_path, ANVIL_MNEMONIC)
    outputs += [again.stdout, again.stderr]
    assert again.returncode == 2 and "already exists" in again.stderr

    mnemonic_ks = tmp_path / "m.json"
    from_mnemonic = run_cli(
        ["keys", "import", "--keystore", str(mnemonic_ks)], tmp_path, ANVIL_MNEMONIC
    )
    outputs += [from_mnemonic.stdout, from_mnemonic.stderr]
    assert from_mnemonic.returncode == 0 and ANVIL_ACCOUNT_0 in from_mnemonic.stdout

    fresh = run_cli(["keys", "new", "--keystore", str(tmp_path / "new.json")], tmp_path)
    outputs += [fresh.stdout, fresh.stderr]
    assert fresh.returncode == 0
    assert fresh.stdout.strip().splitlines()[-1] == read_keystore_address(tmp_path / "new.json")

    no_password = run_cli(
        ["keys", "new", "--keystore", str(tmp_path / "x.json")], tmp_path, password=None
    )
    outputs += [no_password.stdout, no_password.stderr]
    assert no_password.returncode == 2 and not (tmp_path / "x.json").exists()

    everything = "\n".join(outputs)
    assert leaked(everything, KEY_HEX, ANVIL_KEY_0, PASSWORD, ANVIL_MNEMONIC) == []
