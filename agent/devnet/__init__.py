"""A local chain carrying the real Uniswap V2/V3 contracts: ``async with Devnet() as devnet: ...``.

``Devnet`` starts Anvil on a free loopback port, deploys the stack (see ``deploy.py``) or loads a
saved state, writes ``anvil/deployments/<name>.json``, and stops Anvil on exit, on an exception
and on cancellation. ``Devnet(fork_url=...)`` starts an Anvil fork of another chain instead (the
upstream devnet, or mainnet through a real RPC URL) and deploys nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from agent.devnet.deploy import Deployment, PoolInfo, deploy_stack
from agent.devnet.jsonrpc import JsonRpc
from agent.devnet.node import DEV_ACCOUNTS, PROJECT_ROOT, AnvilNode, anvil_binary
from agent.errors import FatalError
from agent.types import Token

__all__ = [
    "DEFAULT_DEPLOYMENTS_DIR",
    "DEV_ACCOUNTS",
    "Deployment",
    "Devnet",
    "PoolInfo",
    "anvil_binary",
]

DEFAULT_DEPLOYMENTS_DIR = PROJECT_ROOT / "anvil" / "deployments"
_DUMP_RESULT = re.compile(rb'"result"\s*:\s*"0x')


# Our contracts built for London (no PUSH0): what a devnet before Shanghai deploys.
DEFAULT_ABIS = PROJECT_ROOT / "abis"
PRE_SHANGHAI_ABIS = DEFAULT_ABIS / "london"


def _state_key(extra_tokens: int, hardfork: str | None = None) -> str:
    """Changes whenever what a deployment would produce changes; guards saved states."""
    key = f"extra_tokens={extra_tokens}" + (f",hardfork={hardfork}" if hardfork else "")
    digest = hashlib.sha256(key.encode())
    abis = PRE_SHANGHAI_ABIS if hardfork else PROJECT_ROOT / "abis"
    for path in (
        Path(__file__).parent / "deploy.py",
        abis / "TestERC20.json",
        abis / "Multicall3.json",
        PROJECT_ROOT / "anvil" / "package-lock.json",
    ):
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


async def _stream_state_dump(rpc_url: str, path: Path) -> None:
    """``anvil_dumpState`` (hex of gzip) unzipped into ``path`` as it arrives: a chain of
    thousands of pools dumps hundreds of megabytes, never held whole in memory."""
    inflate = zlib.decompressobj(wbits=31)  # gzip framing
    request = {"jsonrpc": "2.0", "id": 1, "method": "anvil_dumpState", "params": []}
    head: bytes | None = b""
    carry = b""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session,
        session.post(rpc_url, json=request) as response,
    ):
        with path.open("wb") as out:
            async for chunk in response.content.iter_chunked(1 << 20):
                if head is not None:
                    head += chunk
                    found = _DUMP_RESULT.search(head)
                    if found is None:
                        if len(head) > 65_536 or b'"error"' in head:
                            raise FatalError(f"anvil_dumpState failed: {head[:300]!r}")
                        continue
                    chunk, head = head[found.end() :], None
                end = chunk.find(b'"')
                digits = carry + (chunk if end < 0 else chunk[:end])
                even = len(digits) - len(digits) % 2
                out.write(inflate.decompress(bytes.fromhex(digits[:even].decode())))
                carry = digits[even:]
                if end >= 0:
                    break
            out.write(inflate.flush())
    if head is not None or not inflate.eof:
        raise FatalError("anvil_dumpState answer ended early")


def _meta_path(state_file: Path) -> Path:
    return state_file.with_name(state_file.name + ".meta.json")


class Devnet:
    """Anvil + the deployed stack. Attributes are valid inside ``async with``."""

    def __init__(
        self,
        *,
        name: str = "devnet",
        chain_id: int = 31337,
        fork_url: str | None = None,
        fork_block: int | None = None,
        deployment: Deployment | None = None,
        state_file: Path | None = None,
        deployments_dir: Path | None = DEFAULT_DEPLOYMENTS_DIR,
        extra_tokens: int = 0,
        block_time_s: float | None = None,
        hardfork: str | None = None,
    ) -> None:
        """``hardfork`` (e.g. ``"berlin"``) runs Anvil at that fork: ``"berlin"`` is a
        legacy-gas chain (no base fee, type-0 transactions). Only forks before Shanghai are
        meant: our contracts are then deployed from their London builds (no PUSH0).

        ``block_time_s``: a block every that many seconds once deployed; under a second (a fast
        L2) only from a saved state (Anvil's command line takes fractions, its RPC whole
        seconds)."""
        self.name = name
        self.chain_id = chain_id
        self.fork_url = fork_url
        self._fork_deployment = deployment
        self.state_file = state_file
        self.deployments_dir = deployments_dir
        self.extra_tokens = extra_tokens
        self._node_options: dict[str, Any] = {
            "chain_id": chain_id,
            "fork_url": fork_url,
            "fork_block": fork_block,
        }
        self.hardfork = hardfork
        if hardfork is not None:
            self._node_options["hardfork"] = hardfork
        self.block_time_s = block_time_s
        self.node = AnvilNode(**self._node_options)
        self.rpc: JsonRpc | None = None
        self.deployment: Deployment | None = None
        self.loaded_from_state = False

    # -- what clients use -------------------------------------------------------------------
    @property
    def rpc_url(self) -> str:
        return self.node.rpc_url

    @property
    def ws_url(self) -> str:
        return self.node.ws_url

    @property
    def addresses(self) -> dict[str, str]:
        return self._deployment.addresses

    @property
    def tokens(self) -> dict[str, Token]:
        return self._deployment.tokens

    @property
    def pools(self) -> tuple[PoolInfo, ...]:
        return self._deployment.pools

    @property
    def accounts(self) -> tuple[tuple[str, str], ...]:
        """Anvil's dev accounts as (address, private key); [0] deployed the stack."""
        return DEV_ACCOUNTS

    @property
    def _deployment(self) -> Deployment:
        if self.deployment is None:
            raise FatalError("the devnet is not running")
        return self.deployment

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> Devnet:
        load_state = (
            not self.fork_url and self.state_file is not None and self._saved_state_usable()
        )
        if load_state:
            # Anvil's HTTP server refuses multi-megabyte bodies, so a saved state is loaded with
            # --load-state at start-up (the same loader anvil_loadState uses), never over RPC.
            assert self.state_file is not None
            self.node = AnvilNode(
                **self._node_options,
                block_time_s=self.block_time_s,  # nothing to deploy: blocks come from the start
                extra_args=["--load-state", str(self.state_file)],
            )
        await self.node.start()
        try:
            self.rpc = JsonRpc(self.rpc_url)
            if self.fork_url:
                self.deployment = self._deployment_for_fork()
            elif load_state:
                self._read_saved_deployment()
            else:
                self.deployment = await self._deploy(self.rpc)
                if self.state_file is not None:
                    await self.save_state(self.state_file)
            if self.block_time_s and not load_state:
                if self.block_time_s != int(self.block_time_s):
                    raise FatalError(
                        f"a block every {self.block_time_s}s needs a saved state: Anvil's "
                        "evm_setIntervalMining takes whole seconds"
                    )
                # Deploy with instant mining, then produce a block every block_time_s seconds.
                await self.call("evm_setAutomine", [False])
                await self.call("evm_setIntervalMining", [int(self.block_time_s)])
            if self.deployments_dir is not None:
                self.deployments_dir.mkdir(parents=True, exist_ok=True)
                (self.deployments_dir / f"{self.name}.json").write_text(
                    self._deployment.to_json() + "\n"
                )
        except BaseException:
            await self.stop()
            raise
        return self

    async def _deploy(self, rpc: JsonRpc) -> Deployment:
        """Deploy onto the fresh node (subclasses deploy something else)."""
        return await deploy_stack(
            rpc,
            name=self.name,
            chain_id=self.chain_id,
            rpc_url=self.rpc_url,
            extra_tokens=self.extra_tokens,
            artifacts_dir=PRE_SHANGHAI_ABIS if self.hardfork else DEFAULT_ABIS,
            legacy_gas=self.hardfork == "berlin",
        )

    def _state_key(self) -> str:
        """Guards a saved state: changes whenever what ``_deploy`` would produce changes."""
        return _state_key(self.extra_tokens, self.hardfork)

    async def stop(self) -> None:
        if self.rpc is not None:
            await self.rpc.aclose()
            self.rpc = None
        await self.node.stop()

    async def __aenter__(self) -> Devnet:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- state ---------------------------------------------------------------------------------
    async def save_state(self, path: Path) -> None:
        """Write Anvil's state (``anvil_dumpState``, unzipped to the JSON ``--load-state`` reads)
        to ``path`` and the deployment beside it (``<path>.meta.json``)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        await _stream_state_dump(self.rpc_url, tmp)
        tmp.replace(path)
        meta = {"key": self._state_key(), "deployment": self._deployment.to_json()}
        _meta_path(path).write_text(json.dumps(meta))

    def _saved_state_usable(self) -> bool:
        assert self.state_file is not None
        meta_path = _meta_path(self.state_file)
        if not (self.state_file.is_file() and meta_path.is_file()):
            return False
        meta = json.loads(meta_path.read_text())
        return bool(meta.get("key") == self._state_key())

    def _read_saved_deployment(self) -> None:
        assert self.state_file is not None
        meta = json.loads(_meta_path(self.state_file).read_text())
        self.deployment = Deployment.from_json(meta["deployment"]).with_rpc_url(self.rpc_url)
        self.loaded_from_state = True

    def _deployment_for_fork(self) -> Deployment:
        if self._fork_deployment is not None:
            return self._fork_deployment.with_rpc_url(self.rpc_url)
        return Deployment(self.name, self.chain_id, self.rpc_url, {}, {}, ())

    # -- chain helpers ------------------------------------------------------------------------
    async def call(self, method: str, params: list[Any] | None = None) -> Any:
        if self.rpc is None:
            raise FatalError("the devnet is not running")
        return await self.rpc.call(method, params or [])

    async def snapshot(self) -> str:
        return str(await self.call("evm_snapshot"))

    async def revert(self, snapshot_id: str) -> None:
        if not await self.call("evm_revert", [snapshot_id]):
            raise FatalError(f"evm_revert({snapshot_id}) failed")

    async def mine(self, blocks: int = 1) -> None:
        await self.call("anvil_mine", [hex(blocks)])
