"""``defi-agent keys new|import|address|verify`` and ``defi-agent executor deploy|withdraw``.

This is the only place that prompts: passwords come from the environment variable named in
config (``wallet.password_env``), a password file (``wallet.password_file``) or, when the
terminal is interactive, ``getpass`` (asked twice when creating). Key material for ``import``
comes from stdin or a hidden prompt. Nothing secret is ever read from argv or echoed.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from eth_utils.address import to_checksum_address
from web3 import AsyncWeb3

from agent.errors import ConfigError, WalletError
from agent.wallet.keystore import (
    KeystorePassword,
    create_keystore,
    load_password,
    private_key_from_secret_text,
    prompted_password,
    read_keystore_address,
    unlock_keystore,
)

log = logging.getLogger(__name__)

DEFAULT_KEYSTORE = Path("keys/keystore.json")  # as agent.config.models.WalletConfig.keystore
DEFAULT_PASSWORD_ENV = "DEFI_AGENT_KEYSTORE_PASSWORD"

KeystoreOption = Annotated[
    Path | None,
    typer.Option("--keystore", help="Keystore file (default: wallet.keystore_path from config)."),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="agent.toml to read the wallet section from."),
]


@dataclass(frozen=True, slots=True)
class WalletSettings:
    """Where the keystore is and where its password comes from. ``environ`` holds the
    password variable as found in the real environment or the config's ``.env`` file."""

    keystore_path: Path
    password_env: str | None
    password_file: Path | None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)


def wallet_settings(config_path: Path | None, keystore: Path | None) -> WalletSettings:
    """The wallet section of ``config_path`` (defaults when absent), ``--keystore`` winning."""
    if config_path is None and Path("agent.toml").is_file():
        config_path = Path("agent.toml")  # like every other command
    if config_path is None:
        return WalletSettings(
            keystore if keystore is not None else DEFAULT_KEYSTORE, DEFAULT_PASSWORD_ENV, None
        )
    from agent.config.models import AgentConfig  # only `--config` needs the config layer

    config = AgentConfig.load(config_path)
    wallet = config.wallet
    environ: dict[str, str] = {}
    from_env = config.env_value(wallet.password_env)
    if from_env is not None:
        environ[wallet.password_env] = from_env.get_secret_value()
    return WalletSettings(
        keystore if keystore is not None else wallet.keystore,
        wallet.password_env,
        wallet.password_file,
        environ,
    )


def _interactive() -> bool:
    return sys.stdin.isatty()


def _configured_password(settings: WalletSettings) -> KeystorePassword | None:
    """The password from the environment or the password file; ``None`` when it must be asked
    (interactive only: without a terminal that is an error naming where to put it)."""
    password = load_password(settings.password_env, settings.password_file, settings.environ)
    if password is None and not _interactive():
        raise WalletError(
            f"no keystore password: set ${settings.password_env} or wallet.password_file"
        )
    return password


def _password_for_unlock(settings: WalletSettings) -> KeystorePassword:
    password = _configured_password(settings)
    if password is not None:
        return password
    return prompted_password(getpass.getpass(f"Password for {settings.keystore_path}: "))


def _password_for_new(settings: WalletSettings) -> KeystorePassword:
    password = _configured_password(settings)
    if password is not None:
        return password
    first = getpass.getpass("New keystore password: ")
    second = getpass.getpass("Repeat the password: ")
    if first != second:
        raise WalletError("the two passwords differ")
    return prompted_password(first)


def _secret_key_text() -> str:
    if _interactive():
        return getpass.getpass("Private key (hex) or mnemonic (input hidden): ")
    return sys.stdin.read()


def keys_new(keystore: KeystoreOption = None, config: ConfigOption = None) -> None:
    """Create a new random key, encrypted in a v3 keystore (scrypt, mode 0600)."""
    settings = wallet_settings(config, keystore)
    if settings.keystore_path.exists():
        raise WalletError(
            f"keystore {settings.keystore_path} already exists; refusing to overwrite it"
        )
    password = _password_for_new(settings)
    address = create_keystore(settings.keystore_path, password.secret)
    typer.echo(f"created {settings.keystore_path}")
    typer.echo(address)


def keys_import(keystore: KeystoreOption = None, config: ConfigOption = None) -> None:
    """Import a hex private key or a BIP-39 mnemonic read from stdin (or a hidden prompt)."""
    settings = wallet_settings(config, keystore)
    if settings.keystore_path.exists():
        raise WalletError(
            f"keystore {settings.keystore_path} already exists; refusing to overwrite it"
        )
    private_key = private_key_from_secret_text(_secret_key_text())
    password = _password_for_new(settings)
    address = create_keystore(settings.keystore_path, password.secret, private_key=private_key)
    del private_key
    typer.echo(f"imported into {settings.keystore_path}")
    typer.echo(address)


def keys_address(keystore: KeystoreOption = None, config: ConfigOption = None) -> None:
    """Print the keystore's address (no password needed)."""
    settings = wallet_settings(config, keystore)
    typer.echo(read_keystore_address(settings.keystore_path))


def keys_verify(keystore: KeystoreOption = None, config: ConfigOption = None) -> None:
    """Unlock the keystore with the configured password and print its address."""
    settings = wallet_settings(config, keystore)
    signer = unlock_keystore(settings.keystore_path, _password_for_unlock(settings))
    typer.echo(f"unlocked {signer.address}")


# ---------------------------------------------------------------------------------------------
# executor deploy


def write_arb_executor(config: Path, address: str) -> bool:
    """Set ``execution.arb_executor = address`` in ``config``, keeping its comments and layout
    (a commented-out ``# arb_executor =`` line is replaced). False, leaving the file as it was,
    when the result would not read back as that address."""
    import re
    import tomllib

    text = config.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    line = f'arb_executor = "{address}"\n'
    start = next((i for i, raw in enumerate(lines) if raw.strip() == "[execution]"), None)
    if start is None:
        updated = text + ("" if text.endswith("\n") else "\n") + "\n[execution]\n" + line
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")),
            len(lines),
        )
        key = re.compile(r"^\s*#?\s*arb_executor\s*=")
        found = next((i for i in range(start + 1, end) if key.match(lines[i])), None)
        if found is None:
            lines.insert(start + 1, line)
        else:
            lines[found] = line
        updated = "".join(lines)
    try:
        written = tomllib.loads(updated).get("execution", {}).get("arb_executor")
    except tomllib.TOMLDecodeError:
        return False
    if written != address:
        return False
    config.write_text(updated, encoding="utf-8")
    return True


def _parse_hash_options(values: Sequence[str]) -> dict[str, bytes]:
    parsed: dict[str, bytes] = {}
    for value in values:
        dex, sep, hex_hash = value.partition("=")
        raw = hex_hash.removeprefix("0x")
        if not sep or len(raw) != 64:
            raise ConfigError(f"--v2-init-code-hash expects DEX=0x<64 hex digits>, got {value!r}")
        parsed[dex] = bytes.fromhex(raw)
    return parsed


def executor_deploy(
    config: Annotated[
        Path, typer.Option("--config", help="agent.toml (chain, wallet, store).")
    ] = Path("agent.toml"),
    keystore: KeystoreOption = None,
    v2_init_code_hash: Annotated[
        list[str] | None,
        typer.Option(
            "--v2-init-code-hash",
            help="DEX=0xHASH for a V2 fork whose pair init-code hash is not Uniswap's.",
        ),
    ] = None,
    owner: Annotated[
        str | None,
        typer.Option(
            "--owner",
            help="Where withdrawals go (a cold address is best); default: the keystore wallet.",
        ),
    ] = None,
) -> None:
    """Deploy ArbExecutor from the keystore wallet (it becomes the executor, the key that
    trades; ``--owner`` receives withdrawals); print its address."""
    from agent.config.models import AgentConfig
    from agent.execution.deploy import deploy_arb_executor_from_config

    agent_config = AgentConfig.load(config)
    if owner is not None and not AsyncWeb3.is_address(owner):
        raise ConfigError(f"--owner must be an address, got {owner!r}")
    settings = wallet_settings(config, keystore)
    signer = unlock_keystore(settings.keystore_path, _password_for_unlock(settings))
    extra_hashes = _parse_hash_options(v2_init_code_hash or [])
    owner = to_checksum_address(owner) if owner else None
    address = asyncio.run(
        deploy_arb_executor_from_config(agent_config, signer, extra_hashes, owner)
    )
    typer.echo(
        f"ArbExecutor deployed by {signer.address} (executor), owner {owner or signer.address}"
    )
    line = f'arb_executor = "{address}"'
    if write_arb_executor(config, address):
        typer.echo(f"wrote {line} into [execution] of {config}; the address:")
    else:
        typer.echo(f"add this line to the [execution] section of {config}:\n{line}\nthe address:")
    typer.echo(address)  # last, alone on its line: scripts read it


def executor_withdraw(
    config: Annotated[
        Path, typer.Option("--config", help="agent.toml (chain, wallet, execution.arb_executor).")
    ] = Path("agent.toml"),
    keystore: KeystoreOption = None,
    token: Annotated[
        list[str] | None,
        typer.Option("--token", help="Symbol or address to sweep (default: every known token)."),
    ] = None,
) -> None:
    """Sweep the ArbExecutor's tokens and ETH to its owner (the contract pays nobody else)."""
    from agent.config.models import AgentConfig
    from agent.execution.deploy import withdraw_from_arb_executor

    agent_config = AgentConfig.load(config)
    if agent_config.execution.arb_executor is None:
        raise ConfigError("execution.arb_executor is not set: there is no executor to sweep")
    settings = wallet_settings(config, keystore)
    signer = unlock_keystore(settings.keystore_path, _password_for_unlock(settings))
    owner, swept = asyncio.run(withdraw_from_arb_executor(agent_config, signer, token or []))
    if not swept:
        typer.echo(f"nothing to sweep; the owner is {owner}")
    for name, amount in swept:
        typer.echo(f"swept {amount} (smallest units) of {name} to the owner {owner}")
