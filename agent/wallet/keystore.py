"""Encrypted keystore (eth-account v3, scrypt) and the in-memory ``Signer``.

The signing key exists on disk only inside a v3 keystore written with mode 0600. It is decrypted
once, into exactly one place: the private attribute of a ``Signer``. Nothing in this module asks
for a password interactively; the CLI layer does that and passes the text in. Error messages name
paths and addresses, never keys, mnemonics or passwords.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

from eth_account import Account
from eth_account.hdaccount import ETHEREUM_DEFAULT_PATH, key_from_seed, seed_from_mnemonic
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from pydantic import SecretStr

from agent.errors import WalletError

log = logging.getLogger(__name__)

# eth-account's default scrypt cost (n = 2**18, r = 8, p = 1): about a second per unlock, which
# is the point. Tests may pass a smaller n to keep a suite of many keystores fast.
DEFAULT_SCRYPT_N = 2**18

PasswordSource = Literal["env", "file", "prompt"]

_HEX_KEY_RE = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")


@dataclass(frozen=True, slots=True)
class KeystorePassword:
    """A keystore password and where it came from. ``repr`` never shows the text.

    ``unattended`` is true when no human typed it (environment variable or password file): the
    agent can then sign without anyone present, which is logged loudly at unlock.
    """

    secret: SecretStr
    source: PasswordSource
    origin: str  # env var name, file path or "prompt": safe to log

    @property
    def unattended(self) -> bool:
        return self.source != "prompt"


@dataclass(frozen=True, slots=True)
class SignedTx:
    """A signed transaction: ``raw`` is the RLP/typed envelope for eth_sendRawTransaction,
    ``hash`` its 0x-prefixed keccak hash (the transaction hash)."""

    raw: bytes
    hash: str


class Signer:
    """Holds one unlocked private key and signs transactions with it.

    The key lives only in ``self.__account`` (name-mangled, no public accessor); ``repr`` and
    ``str`` show the address only; pickling and copying are refused so the key cannot leak into
    a subprocess, a cache or a log via serialisation.
    """

    __slots__ = ("__account",)

    def __init__(self, private_key: bytes) -> None:
        """``private_key``: the 32 raw key bytes."""
        if len(private_key) != 32:
            raise WalletError("a private key is exactly 32 bytes")
        try:
            self.__account: LocalAccount = Account.from_key(private_key)
        except Exception:
            raise WalletError("invalid private key (outside the secp256k1 range)") from None

    @property
    def address(self) -> str:
        """The checksummed account address."""
        return str(self.__account.address)

    def sign_transaction(self, tx: Mapping[str, Any]) -> SignedTx:
        """Sign a fully populated transaction dict (EIP-1559 fields, chainId, nonce, gas).

        Raises ``WalletError`` when the dict's ``from`` is another account.
        """
        sender = tx.get("from")
        if sender is not None and to_checksum_address(str(sender)) != self.address:
            raise WalletError(f"transaction sender {sender} is not the signer {self.address}")
        fields = {k: v for k, v in tx.items() if k != "from"}
        signed = self.__account.sign_transaction(fields)
        return SignedTx(raw=bytes(signed.raw_transaction), hash="0x" + signed.hash.hex())

    def sign_message(self, text: str) -> str:
        """The EIP-191 ``personal_sign`` signature of ``text`` (0x + 65 bytes r, s, v), as a
        relay's ``X-Flashbots-Signature`` asks of the reputation key."""
        signed = self.__account.sign_message(encode_defunct(text=text))
        return "0x" + bytes(signed.signature).hex()

    def __repr__(self) -> str:
        return f"Signer(address={self.address})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("Signer holds a private key and cannot be pickled")

    def __copy__(self) -> NoReturn:
        raise TypeError("Signer holds a private key and cannot be copied")

    def __deepcopy__(self, memo: object) -> NoReturn:
        raise TypeError("Signer holds a private key and cannot be copied")


# ---------------------------------------------------------------------------------------------
# Key material from operator input


def private_key_from_secret_text(
    secret_text: str, account_path: str = ETHEREUM_DEFAULT_PATH
) -> bytes:
    """Parse what an operator pasted for ``keys import``: a hex private key (with or without 0x)
    or a BIP-39 mnemonic (the account at ``account_path``, Ethereum's default m/44'/60'/0'/0/0).

    Returns the 32 raw key bytes. Errors never echo the input.
    """
    text = secret_text.strip()
    if _HEX_KEY_RE.match(text):
        return bytes.fromhex(text.removeprefix("0x"))
    words = text.split()
    if len(words) in (12, 15, 18, 21, 24):
        try:
            # hdaccount directly: Account.from_mnemonic would need the process-wide
            # enable_unaudited_hdwallet_features() switch. Its errors quote the words: drop them.
            seed = seed_from_mnemonic(" ".join(words), "")
            return key_from_seed(seed, account_path)
        except Exception:
            raise WalletError("the mnemonic is not a valid BIP-39 phrase") from None
    raise WalletError("expected a 64-hex-digit private key or a 12/15/18/21/24-word mnemonic")


def generate_private_key() -> bytes:
    """32 fresh random key bytes from the OS CSPRNG (via eth-account)."""
    return bytes(Account.create().key)


# ---------------------------------------------------------------------------------------------
# Keystore files


def encrypt_keystore(
    private_key: bytes, password: SecretStr, scrypt_n: int = DEFAULT_SCRYPT_N
) -> dict[str, Any]:
    """The v3 keystore JSON (scrypt KDF) for ``private_key`` under ``password``."""
    if not password.get_secret_value():
        raise WalletError("refusing an empty keystore password")
    return Account.encrypt(
        private_key, password.get_secret_value(), kdf="scrypt", iterations=scrypt_n
    )


def write_keystore_file(path: Path, keystore: Mapping[str, Any]) -> None:
    """Write ``keystore`` to ``path`` atomically with mode 0600; never overwrite an existing file.

    The temp file is created with ``os.open(..., 0o600)`` so the key is never readable by
    others, whatever the umask; ``os.replace`` makes the final file appear whole or not at all.
    """
    path = Path(path)
    if path.exists():
        raise WalletError(f"keystore {path} already exists; refusing to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is masked by umask only downward; be explicit
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(keystore, fh)
            fh.flush()
            os.fsync(fh.fileno())
        # link() publishes the complete file atomically and, unlike os.replace, fails if a
        # second writer won the race since the check above.
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:
            # Filesystems without hard links: fall back to the (overwriting) atomic rename.
            if path.exists():
                raise FileExistsError(str(path)) from None
            os.replace(tmp, path)
    except FileExistsError:
        raise WalletError(f"keystore {path} already exists; refusing to overwrite it") from None
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the file itself is synced
    finally:
        os.close(dir_fd)


def create_keystore(
    path: Path,
    password: SecretStr,
    private_key: bytes | None = None,
    scrypt_n: int = DEFAULT_SCRYPT_N,
) -> str:
    """Encrypt ``private_key`` (a fresh random one when ``None``) into a new keystore at ``path``.

    Returns the checksummed address. Raises ``WalletError`` if ``path`` exists.
    """
    path = Path(path)
    if path.exists():
        raise WalletError(f"keystore {path} already exists; refusing to overwrite it")
    key = private_key if private_key is not None else generate_private_key()
    address = Signer(key).address
    keystore = encrypt_keystore(key, password, scrypt_n)
    write_keystore_file(path, keystore)
    log.info("created keystore %s for %s", path, address)
    return address


def _read_keystore_json(path: Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WalletError(f"keystore {path} does not exist") from None
    except OSError as exc:
        raise WalletError(f"cannot read keystore {path}: {exc.strerror}") from None
    try:
        keystore = json.loads(text)
    except json.JSONDecodeError:
        raise WalletError(f"keystore {path} is not valid JSON") from None
    if not isinstance(keystore, dict) or ("crypto" not in keystore and "Crypto" not in keystore):
        raise WalletError(f"keystore {path} is not a v3 keystore")
    return keystore


def read_keystore_address(path: Path) -> str:
    """The checksummed address stored in the keystore's ``address`` field (no password needed)."""
    keystore = _read_keystore_json(path)
    raw = keystore.get("address")
    if not isinstance(raw, str) or not re.fullmatch(r"(0x)?[0-9a-fA-F]{40}", raw):
        raise WalletError(f"keystore {path} has no address field")
    return to_checksum_address("0x" + raw.removeprefix("0x"))


def unlock_keystore(path: Path, password: KeystorePassword) -> Signer:
    """Decrypt the keystore at ``path`` into a ``Signer``.

    Raises ``WalletError("wrong keystore password for <path>")`` on a MAC mismatch, and refuses
    a keystore that group or others may read or write (naming the ``chmod 600`` to run). When
    the password came from the environment or a file, logs a loud warning: this process can
    now sign without a human present. A password from an environment variable is then removed
    from this process's environment, so no child process (Anvil, a helper) inherits it.
    """
    keystore = _read_keystore_json(path)
    check_keystore_mode(path)
    try:
        key = bytes(Account.decrypt(keystore, password.secret.get_secret_value()))
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise WalletError(f"wrong keystore password for {path}") from None
        raise WalletError(f"keystore {path} cannot be decrypted (malformed)") from None
    signer = Signer(key)
    del key
    stored = keystore.get("address")
    if isinstance(stored, str) and stored.lower().removeprefix("0x") != signer.address[2:].lower():
        raise WalletError(f"keystore {path} address field does not match its key")
    if password.unattended:
        log.warning(
            "UNATTENDED SIGNING ENABLED: keystore %s (%s) unlocked with the password from %s %s; "
            "this process can sign transactions without anyone present",
            path,
            signer.address,
            password.source,
            password.origin,
        )
    if password.source == "env":
        scrub_environment(password.origin)
    return signer


def check_keystore_mode(path: Path) -> None:
    """Refuse a keystore that group or others may access: anyone who reads it can brute-force
    its password offline. The error names the exact command that fixes it."""
    try:
        mode = stat.S_IMODE(Path(path).stat().st_mode)
    except OSError as exc:
        raise WalletError(f"cannot read keystore {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise WalletError(
            f"keystore {path} has mode {mode:o}: group or others may read it; "
            f"run `chmod 600 {path}` and start again"
        )


def scrub_environment(name: str) -> None:
    """Remove ``name`` (a password variable, once used) from this process's environment, so
    child processes started from now on do not inherit it."""
    if os.environ.pop(name, None) is not None:
        log.info("removed %s from the process environment after unlocking", name)


# ---------------------------------------------------------------------------------------------
# Password sources (non-interactive; the CLI falls back to a prompt)


def load_password(
    env_var: str | None,
    password_file: Path | None,
    environ: Mapping[str, str] | None = None,
) -> KeystorePassword | None:
    """The keystore password from the environment variable ``env_var`` (when set and non-empty)
    or else from ``password_file`` (first line, trailing newline stripped).

    Returns ``None`` when neither provides one: the caller then prompts, if interactive. Warns
    when the password file is readable by group or others.
    """
    env = os.environ if environ is None else environ
    if env_var:
        value = env.get(env_var)
        if value:
            return KeystorePassword(SecretStr(value), "env", env_var)
    if password_file is not None:
        path = Path(password_file).expanduser()
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise WalletError(f"password file {path} does not exist") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning(
                "password file %s has mode %o: readable by group/others; run chmod 600 %s",
                path,
                stat.S_IMODE(mode),
                path,
            )
        text = path.read_text(encoding="utf-8")
        value = text.splitlines()[0] if text else ""
        if not value:
            raise WalletError(f"password file {path} is empty")
        return KeystorePassword(SecretStr(value), "file", str(path))
    return None


def prompted_password(text: str) -> KeystorePassword:
    """Wrap a password a human just typed at a prompt."""
    return KeystorePassword(SecretStr(text), "prompt", "prompt")
