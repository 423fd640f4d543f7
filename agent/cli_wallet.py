"""``defi-agent keys new|import|address|verify`` and ``defi-agent executor deploy``.

This is the only place that prompts: passwords come from the environment variable named in
config (``wallet.password_env``), a password file (``wallet.password_file``) or, when the
terminal is interactive, ``getpass`` (asked twice when creating). Key material for ``import``
comes from stdin or a hidden prompt. Nothing secret is ever read from argv or echoed.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from agent.cli import executor_app, keys_app
from agent.errors import WalletError
from agent.wallet import (
    KeystorePassword,
    create_keystore,
    load_password,
    private_key_from_secret_text,
    prompted_password,
    read_keystore_address,
    unlock_keystore,
)

DEFAULT_KEYSTORE = Path("keys/keystore.json")  # as agent.config.WalletConfig.keystore
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
    if config_path is None:
        return WalletSettings(
            keystore if keystore is not None else DEFAULT_KEYSTORE, DEFAULT_PASSWORD_ENV, None
        )
    from agent.config import AgentConfig  # only `--config` needs the config layer

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


def _password_for_unlock(settings: WalletSettings) -> KeystorePassword:
    password = load_password(settings.password_env, settings.password_file, settings.environ)
    if password is not None:
        return password
    if not _interactive():
        raise WalletError(
            f"no keystore password: set ${settings.password_env} or wallet.password_file"
        )
    return prompted_password(getpass.getpass(f"Password for {settings.keystore_path}: "))


def _password_for_new(settings: WalletSettings) -> KeystorePassword:
    password = load_password(settings.password_env, settings.password_file, settings.environ)
    if password is not None:
        return password
    if not _interactive():
        raise WalletError(
            f"no keystore password: set ${settings.password_env} or wallet.password_file"
        )
    first = getpass.getpass("New keystore password: ")
    second = getpass.getpass("Repeat the password: ")
    if first != second:
        raise WalletError("the two passwords differ")
    return prompted_password(first)


def _secret_key_text() -> str:
    if _interactive():
        return getpass.getpass("Private key (hex) or mnemonic (input hidden): ")
    return sys.stdin.read()


@keys_app.command("new")
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


@keys_app.command("import")
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


@keys_app.command("address")
def keys_address(keystore: KeystoreOption = None, config: ConfigOption = None) -> None:
    """Print the keystore's address (no password needed)."""
    settings = wallet_settings(config, keystore)
    typer.echo(read_keystore_address(settings.keystore_path))


@keys_app.command("verify")
def keys_verify(keystore: KeystoreOption = None, config: ConfigOption = None) -> None:
    """Unlock the keystore with the configured password and print its address."""
    settings = wallet_settings(config, keystore)
    signer = unlock_keystore(settings.keystore_path, _password_for_unlock(settings))
    typer.echo(f"unlocked {signer.address}")


__all__ = ["executor_app", "keys_app", "wallet_settings"]
