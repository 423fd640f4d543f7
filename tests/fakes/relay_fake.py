"""A Flashbots-style bundle relay on 127.0.0.1, in front of a real Anvil node.

What it does, as the relay documentation describes it (docs.flashbots.net, "RPC endpoint" and
"Authentication"):

- every request must carry ``X-Flashbots-Signature: <address>:<signature>``, the EIP-191
  signature of the hex keccak256 of the body; a missing or wrong one gets HTTP 403 with a
  JSON-RPC error (code -32600). The recovered signer of every request is recorded;
- ``eth_callBundle`` runs the raw transactions in order on the node (``evm_snapshot``,
  automine off, send, ``evm_mine``, receipts, ``evm_revert``) and answers in Flashbots' result
  shape (``results[i].error`` / ``revert`` for a reverting transaction);
- ``eth_sendBundle`` answers ``{bundleHash}`` and includes the bundle in its target block, whole
  or not at all: when the node's next block is the target (now, or later when the chain gets
  there), the transactions are sent with automine off and one block is mined; if any was not
  accepted or reverted, the node is reverted to the snapshot taken before, so nothing of the
  bundle remains.

``paused`` holds every bundle without including it (a bundle left pending). Every state change
on the node happens under one lock and restores automine; other senders' transactions sent
while a bundle is being tried would share its block (or its revert), so tests keep their own
traffic out of those moments.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils.crypto import keccak

HEADER = "X-Flashbots-Signature"


@dataclass(frozen=True)
class RelayCall:
    """One request as the relay saw it: ``signer`` is the address recovered from the header
    (None when missing or wrong), ``status`` the HTTP status answered."""

    method: str
    params: list[Any]
    signer: str | None
    status: int


@dataclass
class PendingBundle:
    bundle_hash: str
    raw_txs: list[str]
    block: int


@dataclass
class RelayFake:
    node_url: str
    calls: list[RelayCall] = field(default_factory=list)
    # (bundle hash, block) of every bundle included
    included: list[tuple[str, int]] = field(default_factory=list)
    paused: bool = False
    poll_s: float = 0.02

    def __post_init__(self) -> None:
        self._pending: list[PendingBundle] = []
        self._lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def signers(self) -> set[str]:
        return {c.signer for c in self.calls if c.signer is not None}

    def calls_to(self, method: str) -> list[RelayCall]:
        return [c for c in self.calls if c.method == method]

    async def start(self) -> RelayFake:
        self._session = aiohttp.ClientSession()
        self._runner, self.port = await serve_json_rpc(self._handle)
        self._watcher = asyncio.create_task(self._watch_heads())
        return self

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> RelayFake:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- serving ----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            message = json.loads(body)
            method, params, request_id = message["method"], message["params"], message["id"]
        except (ValueError, KeyError, TypeError):
            return _error(400, None, -32700, "parse error")
        signer, problem = _verify(request.headers.get(HEADER), body)
        if problem is not None:
            self.calls.append(RelayCall(method, params, None, 403))
            return _error(403, request_id, -32600, problem)
        self.calls.append(RelayCall(method, params, signer, 200))
        bundle = params[0]
        if method == "eth_callBundle":
            result = await self._call_bundle(bundle["txs"])
        elif method == "eth_sendBundle":
            result = await self._send_bundle(bundle["txs"], int(bundle["blockNumber"], 16))
        else:
            return _error(200, request_id, -32601, f"the method {method} does not exist")
        return web.json_response({"jsonrpc": "2.0", "id": request_id, "result": result})

    async def _call_bundle(self, raw_txs: list[str]) -> dict[str, Any]:
        async with self._lock:
            state_block = await self._block_number()
            outcomes = await self._try(raw_txs, keep=False)
        results = []
        for raw, (tx_hash, receipt, error) in zip(raw_txs, outcomes, strict=True):
            tx = Account.recover_transaction(raw)
            entry: dict[str, Any] = {
                "txHash": tx_hash,
                "fromAddress": tx,
                "gasUsed": int(receipt["gasUsed"], 16) if receipt else 0,
                "coinbaseDiff": "0",
                "ethSentToCoinbase": "0",
                "value": "0x",
            }
            if error is not None:
                entry["error"] = error
                entry["revert"] = error
            results.append(entry)
        return {
            "bundleHash": _bundle_hash(outcomes),
            "results": results,
            "stateBlockNumber": state_block,
            "totalGasUsed": sum(r["gasUsed"] for r in results),
            "coinbaseDiff": "0",
        }

    async def _send_bundle(self, raw_txs: list[str], block: int) -> dict[str, Any]:
        hashes = ["0x" + keccak(hexstr=raw).hex() for raw in raw_txs]
        bundle = PendingBundle(
            "0x" + keccak(b"".join(bytes.fromhex(h[2:]) for h in hashes)).hex(), raw_txs, block
        )
        self._pending.append(bundle)
        await self._include_due()
        return {"bundleHash": bundle.bundle_hash}

    # -- inclusion --------------------------------------------------------------------------

    async def _watch_heads(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            if self._pending and not self.paused:
                # the node may go away at the end of a test
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    await self._include_due()

    async def _include_due(self) -> None:
        """Try every bundle whose target is the node's next block; forget the past ones."""
        if self.paused:
            return
        async with self._lock:
            head = await self._block_number()
            due = [b for b in self._pending if b.block == head + 1]
            self._pending = [b for b in self._pending if b.block > head + 1]
            for bundle in due:
                if await self._block_number() != bundle.block - 1:
                    continue  # an earlier bundle took this block
                outcomes = await self._try(bundle.raw_txs, keep=True)
                if all(error is None for _, _, error in outcomes):
                    self.included.append((bundle.bundle_hash, bundle.block))

    async def _try(
        self, raw_txs: list[str], keep: bool
    ) -> list[tuple[str, dict[str, Any] | None, str | None]]:
        """Send ``raw_txs`` into one block; keep it only when ``keep`` and none failed.
        (hash, receipt or None, error or None) per transaction. Caller holds the lock."""
        snapshot = await self._node("evm_snapshot", [])
        await self._node("evm_setAutomine", [False])
        outcomes: list[tuple[str, dict[str, Any] | None, str | None]] = []
        try:
            accepted = []
            for raw in raw_txs:
                tx_hash = "0x" + keccak(hexstr=raw).hex()
                answer = await self._node_answer("eth_sendRawTransaction", [raw])
                error = answer.get("error")
                accepted.append(error is None)
                outcomes.append((tx_hash, None, None if error is None else error["message"]))
            if any(accepted):
                await self._node("evm_mine", [])
            for i, (tx_hash, _, error) in enumerate(outcomes):
                if error is not None:
                    continue
                receipt = await self._node("eth_getTransactionReceipt", [tx_hash])
                failed = receipt is None or int(receipt["status"], 16) != 1
                outcomes[i] = (tx_hash, receipt, "execution reverted" if failed else None)
        finally:
            if not (keep and outcomes and all(e is None for _, _, e in outcomes)):
                await self._node("evm_revert", [snapshot])
            await self._node("evm_setAutomine", [True])
        return outcomes

    async def mine_block(self) -> None:
        """Mine one block on the node (the chain moving on), never inside a bundle attempt."""
        async with self._lock:
            await self._node("evm_mine", [])

    # -- the node ---------------------------------------------------------------------------

    async def _block_number(self) -> int:
        return int(await self._node("eth_blockNumber", []), 16)

    async def _node_answer(self, method: str, params: list[Any]) -> dict[str, Any]:
        assert self._session is not None
        payload = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        async with self._session.post(self.node_url, json=payload) as response:
            answer: dict[str, Any] = await response.json()
            return answer

    async def _node(self, method: str, params: list[Any]) -> Any:
        answer = await self._node_answer(method, params)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]


async def serve_json_rpc(
    handler: Callable[[web.Request], Awaitable[web.Response]],
) -> tuple[web.AppRunner, int]:
    """``handler`` answering POST / on 127.0.0.1 at a free port: (runner, port)."""
    app = web.Application()
    app.router.add_post("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    return runner, server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


def _verify(header: str | None, body: bytes) -> tuple[str | None, str | None]:
    """(recovered signer, None) or (None, the relay's error message)."""
    if not header:
        return None, "missing X-Flashbots-Signature header"
    address, _, signature = header.partition(":")
    try:
        recovered = Account.recover_message(
            encode_defunct(text="0x" + keccak(body).hex()), signature=signature
        )
    except Exception:  # any malformed signature is a refusal
        return None, f"error in signature check {address}"
    if recovered.lower() != address.lower():
        return None, f"error in signature check {address}"
    return str(recovered), None


def _bundle_hash(outcomes: list[tuple[str, Any, Any]]) -> str:
    return "0x" + keccak(b"".join(bytes.fromhex(h[2:]) for h, _, _ in outcomes)).hex()


def _error(status: int, request_id: Any, code: int, message: str) -> web.Response:
    return web.json_response(
        {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}},
        status=status,
    )


@dataclass
class ProtectRpcFake:
    """A private transaction RPC (Flashbots Protect style) on 127.0.0.1: ``eth_sendRawTransaction``
    is accepted and held, out of the public node's sight, until ``release`` forwards the held
    transactions to the node; other methods are refused. Records every raw transaction."""

    node_url: str
    raw_txs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._held: list[str] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> ProtectRpcFake:
        self._runner, self.port = await serve_json_rpc(self._handle)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        message = await request.json()
        request_id = message.get("id")
        if message.get("method") != "eth_sendRawTransaction":
            return _error(200, request_id, -32601, "method not supported")
        raw = str(message["params"][0])
        self.raw_txs.append(raw)
        if raw not in self._held:
            self._held.append(raw)
        tx_hash = "0x" + keccak(hexstr=raw).hex()
        return web.json_response({"jsonrpc": "2.0", "id": request_id, "result": tx_hash})

    async def release(self) -> None:
        """Forward the held transactions to the node (they are mined there)."""
        async with aiohttp.ClientSession() as session:
            for raw in self._held:
                payload = {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "eth_sendRawTransaction",
                    "params": [raw],
                }
                async with session.post(self.node_url, json=payload) as response:
                    answer = await response.json()
                    assert "error" not in answer, answer
        self._held.clear()
