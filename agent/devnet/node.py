"""The Anvil process: find the pinned binary, start it on a free loopback port, stop it for sure.

Anvil is told to listen on port 0 and we read the port it chose from its first line of output,
so two nodes started at once never race for a port. Whoever starts a node stops it: ``stop()``
terminates, waits, then kills; ``AnvilNode`` is an async context manager that calls it on exit,
exception or cancellation.

Secrets never reach Anvil's command line or environment: a fork URL (its path or query often
holds the provider's API key) is passed through Anvil's environment and named on the command
line only by an alias (``--fork-url upstream``, resolved from the ``[rpc_endpoints]`` of a
``foundry.toml`` in a private directory, which holds ``${DEFI_AGENT_FORK_URL}``, not the URL);
Anvil's environment is an allowlist (no keystore password, no API key of ours is inherited);
Anvil's output quoted in an error has the fork URL redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from agent.errors import FatalError
from agent.redaction import redact_url

PROJECT_ROOT = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(rb"Listening on (?P<host>[\d.]+):(?P<port>\d+)")

# Anvil's default dev accounts (mnemonic "test test ... junk"): public knowledge, devnet only.
DEV_ACCOUNTS: tuple[tuple[str, str], ...] = (
    (
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    ),
    (
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    ),
    (
        "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
        "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    ),
    (
        "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
        "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    ),
    (
        "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
        "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    ),
    (
        "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
        "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    ),
    (
        "0x976EA74026E726554dB657fA54763abd0C3a0aa9",
        "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    ),
    (
        "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955",
        "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    ),
    (
        "0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f",
        "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    ),
    (
        "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720",
        "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
    ),
)


# The fork URL's variable in Anvil's environment, and the alias Anvil's command line uses.
FORK_URL_ENV = "DEFI_AGENT_FORK_URL"
_FORK_ALIAS = "upstream"
# What Anvil may inherit from us: locale, paths, the network's proxy and CA settings (a fork of
# a real RPC needs them), Foundry's and Rust's own settings, and the test suite's marker (tests
# find their leftover nodes by it). Nothing else: no password, no API key.
_INHERITED = frozenset(
    {"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "TERM"}
    | {"SSL_CERT_FILE", "SSL_CERT_DIR"}
    | {
        p
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
        for p in (name, name.lower())
    }
)
_INHERITED_PREFIXES = ("LC_", "FOUNDRY_", "RUST_", "DEFI_AGENT_TEST_")


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for an Anvil process: the allowlisted part of ours plus ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name in _INHERITED or name.startswith(_INHERITED_PREFIXES)
    }
    env.update(extra or {})
    return env


def anvil_binary() -> Path:
    """Path of the Anvil binary: ``$ANVIL_BIN``, else the pinned npm platform package."""
    override = os.environ.get("ANVIL_BIN")
    if override:
        path = Path(override)
        if not path.is_file():
            raise FatalError(f"ANVIL_BIN={override} does not exist")
        return path
    system = {"Linux": "linux", "Darwin": "darwin", "Windows": "win32"}.get(platform.system(), "")
    machine = {"x86_64": "amd64", "AMD64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine(), platform.machine()
    )
    exe = "anvil.exe" if system == "win32" else "anvil"
    path = (
        PROJECT_ROOT / "anvil" / "node_modules" / "@foundry-rs" / f"anvil-{system}-{machine}"
    ) / ("bin/" + exe)
    if path.is_file():
        return path
    on_path = shutil.which("anvil")
    if on_path:
        return Path(on_path)
    raise FatalError(
        f"Anvil binary not found at {path}. Run `make setup` (it installs the pinned "
        "toolchain with `npm ci --prefix anvil --ignore-scripts`), or set ANVIL_BIN."
    )


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


class AnvilNode:
    """One Anvil process on 127.0.0.1. ``rpc_url`` is valid between start() and stop()."""

    def __init__(
        self,
        *,
        chain_id: int = 31337,
        fork_url: str | None = None,
        fork_block: int | None = None,
        block_time_s: float | None = None,
        extra_args: Sequence[str] = (),
        start_timeout_s: float = 20.0,
        hardfork: str | None = None,
    ) -> None:
        self._args = ["--host", "127.0.0.1", "--port", "0", "--chain-id", str(chain_id)]
        self._fork_url = fork_url or None
        if fork_url:
            self._args += ["--fork-url", _FORK_ALIAS]
            if fork_block is not None:
                self._args += ["--fork-block-number", str(fork_block)]
        if block_time_s:
            self._args += ["--block-time", str(block_time_s)]
        if hardfork:
            self._args += ["--hardfork", hardfork]
        self._args += list(extra_args)
        self._start_timeout_s = start_timeout_s
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        self._config_dir: Path | None = None
        self.rpc_url = ""
        self.ws_url = ""

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def start(self) -> None:
        binary = anvil_binary()
        extra_env: dict[str, str] = {}
        if self._fork_url is not None:
            self._config_dir = Path(tempfile.mkdtemp(prefix="defi-agent-anvil-"))
            # The alias resolves from Anvil's environment: the URL is in no file and no argv.
            (self._config_dir / "foundry.toml").write_text(
                f'[rpc_endpoints]\n{_FORK_ALIAS} = "${{{FORK_URL_ENV}}}"\n', encoding="utf-8"
            )
            extra_env[FORK_URL_ENV] = self._fork_url
        self._proc = await asyncio.create_subprocess_exec(
            str(binary),
            *self._args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop Anvil ourselves
            env=child_environment(extra_env),
            cwd=self._config_dir,
        )
        try:
            port = await asyncio.wait_for(self._read_port(), self._start_timeout_s)
        except BaseException:
            await self.stop()
            raise
        self.rpc_url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}"
        # Keep reading Anvil's output so its pipe never fills up and blocks it.
        assert self._proc.stdout is not None
        self._drain = asyncio.create_task(_drain(self._proc.stdout), name="anvil-output")

    async def _read_port(self) -> int:
        assert self._proc is not None and self._proc.stdout is not None
        tail: list[bytes] = []
        while True:
            line = await self._proc.stdout.readline()
            if not line:
                output = self._redact(b"".join(tail[-20:]).decode(errors="replace"))
                raise FatalError(f"Anvil exited before listening:\n{output}")
            tail.append(line)
            match = _LISTENING.search(line)
            if match:
                return int(match.group("port"))

    def _redact(self, text: str) -> str:
        """``text`` (Anvil's output) with the fork URL, and anything after its host, hidden."""
        if self._fork_url is None:
            return text
        shown = redact_url(self._fork_url)
        text = text.replace(self._fork_url, shown)
        parts = self._fork_url.split("://", 1)[-1].split("/", 1)
        if len(parts) == 2 and parts[1]:
            text = text.replace(parts[1], "**********")  # the path alone (the key) too
        return text

    async def stop(self) -> None:
        """Terminate Anvil (kill after 5 s); safe to call twice and under cancellation."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.shield(asyncio.wait_for(proc.wait(), 5.0))
            except (TimeoutError, asyncio.CancelledError):
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.shield(proc.wait())
        if self._drain is not None:
            self._drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain
            self._drain = None
        if self._config_dir is not None:
            shutil.rmtree(self._config_dir, ignore_errors=True)
            self._config_dir = None

    async def __aenter__(self) -> AnvilNode:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
