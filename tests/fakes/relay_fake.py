"""A Flashbots-style bundle relay on 127.0.0.1, in front of a real Anvil node.

What it does, as the relay documentation describes it (docs.flashbots.net, "RPC endpoint" and
"Authentication"):

- every request must carry ``X-Flashbots-Signature: <address>:<signature>``, the EIP-191
  signature of the hex keccak256 of the body; a missing or wrong one gets HTTP 403 with a
  JSON-RPC error (code -32600). The recovered signer of every request is recorded;
- ``eth_callBundle`` runs the raw transactions in order on the node's latest state with
  ``eth_simulateV1`` (nothing changes on the node; nonces checked as a block would) and answers
  in Flashbots' result shape (``results[i].error`` / ``revert`` for a failing transaction);
- ``eth_sendBundle`` answers ``{bundleHash}`` and includes the bundle in its target block, whole
  or not at all: when the node's next block is the target (now, or later when the chain gets
  there), the bundle is simulated again; only if every transaction succeeds are they sent with
  automine off and one block mined (``evm_snapshot`` first, ``evm_revert`` should any still
  fail, automine back on), so a bundle that would revert never touches the chain.

``paused`` holds every bundle without including it (a bundle left pending). Every inclusion
happens under one lock and restores automine; another sender's transaction sent in the moment
a bundle is being mined would share its block, so tests mine their own blocks through
``mine_block`` (the same lock).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import rlp
from aiohttp import web
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.typed_transactions import TypedTransaction
from eth_utils.crypto import keccak
from hexbytes import HexBytes

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
    # why bundles were not included (a test's failure message shows it)
    errors: list[str] = field(default_factory=list)
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
            outcomes = await self._simulate(raw_txs)
        results = []
        for outcome in outcomes:
            entry: dict[str, Any] = {
                "txHash": outcome.tx_hash,
                "fromAddress": outcome.sender,
                "gasUsed": outcome.gas_used,
                "coinbaseDiff": "0",
                "ethSentToCoinbase": "0",
                "value": "0x",
            }
            if outcome.error is not None:
                entry["error"] = outcome.error
                entry["revert"] = outcome.error
            results.append(entry)
        return {
            "bundleHash": _bundle_hash([o.tx_hash for o in outcomes]),
            "results": results,
            "stateBlockNumber": state_block,
            "totalGasUsed": sum(o.gas_used for o in outcomes),
            "coinbaseDiff": "0",
        }

    async def _send_bundle(self, raw_txs: list[str], block: int) -> dict[str, Any]:
        hashes = ["0x" + keccak(hexstr=raw).hex() for raw in raw_txs]
        bundle = PendingBundle(_bundle_hash(hashes), raw_txs, block)
        self._pending.append(bundle)
        await self._include_due()
        return {"bundleHash": bundle.bundle_hash}

    # -- inclusion --------------------------------------------------------------------------

    async def _watch_heads(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            if self._pending and not self.paused:
                try:
                    await self._include_due()
                except (aiohttp.ClientError, OSError):
                    pass  # the node may go away at the end of a test
                except Exception as exc:  # recorded for the test to show; the watch goes on
                    self.errors.append(f"{type(exc).__name__}: {exc}")

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
                outcomes = await self._simulate(bundle.raw_txs)
                failed = [o.error for o in outcomes if o.error is not None]
                if failed:
                    self.errors.append(f"block {bundle.block}: simulation failed: {failed}")
                elif await self._mine(bundle.raw_txs):
                    self.included.append((bundle.bundle_hash, bundle.block))

    async def _simulate(self, raw_txs: list[str]) -> list[TxOutcome]:
        """The raw transactions run in order on the latest state (``eth_simulateV1``, nothing
        changes on the node), nonces checked as a block would. Caller holds the lock."""
        txs = [_decoded(raw) for raw in raw_txs]
        calls, errors = [], []
        next_nonce: dict[str, int] = {}
        for tx in txs:
            if tx.sender not in next_nonce:
                count = await self._node("eth_getTransactionCount", [tx.sender, "latest"])
                next_nonce[tx.sender] = int(count, 16)
            expected = next_nonce[tx.sender]
            next_nonce[tx.sender] += 1
            errors.append(
                None
                if tx.nonce == expected
                else f"nonce too {'low' if tx.nonce < expected else 'high'}: "
                f"{tx.nonce}, the account's next is {expected}"
            )
            calls.append(tx.call)
        answer = await self._node(
            "eth_simulateV1", [{"blockStateCalls": [{"calls": calls}]}, "latest"]
        )
        outcomes = []
        for tx, error, result in zip(txs, errors, answer[0]["calls"], strict=True):
            if error is None and int(result["status"], 16) != 1:
                error = "execution reverted"
            outcomes.append(TxOutcome(tx.tx_hash, tx.sender, int(result["gasUsed"], 16), error))
        return outcomes

    async def _mine(self, raw_txs: list[str]) -> bool:
        """The bundle, and only it, in the node's next block (automine off while it is sent).
        Its simulation passed under the same lock, so this block holds it whole; should any
        transaction still fail, the block is reverted. Caller holds the lock."""
        snapshot = await self._node("evm_snapshot", [])
        await self._node("evm_setAutomine", [False])
        landed = False
        try:
            for raw in raw_txs:
                await self._node("eth_sendRawTransaction", [raw])
            await self._node("evm_mine", [])
            receipts = [
                await self._node("eth_getTransactionReceipt", ["0x" + keccak(hexstr=raw).hex()])
                for raw in raw_txs
            ]
            landed = all(r is not None and int(r["status"], 16) == 1 for r in receipts)
            if not landed:
                self.errors.append(f"mined, but not every transaction succeeded: {receipts}")
        finally:
            if not landed:
                await self._node("evm_revert", [snapshot])
            await self._node("evm_setAutomine", [True])
        return landed

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


def _bundle_hash(tx_hashes: list[str]) -> str:
    return "0x" + keccak(b"".join(bytes.fromhex(h[2:]) for h in tx_hashes)).hex()


@dataclass(frozen=True)
class DecodedTx:
    tx_hash: str
    sender: str
    nonce: int
    call: dict[str, Any]  # the transaction as an eth_simulateV1 call


@dataclass(frozen=True)
class TxOutcome:
    tx_hash: str
    sender: str
    gas_used: int
    error: str | None


def _decoded(raw: str) -> DecodedTx:
    """A signed raw transaction (type 2, or legacy) as its sender, nonce and call."""
    data = bytes.fromhex(raw.removeprefix("0x"))
    sender = str(Account.recover_transaction(raw))
    if data[0] >= 0xC0:  # legacy RLP list
        nonce, gas_price, gas, to, value, payload = (rlp.decode(data) or [])[:6]
        fields = {
            "nonce": _int(nonce),
            "gas": _int(gas),
            "to": to,
            "value": _int(value),
            "data": payload,
            "gasPrice": _int(gas_price),
        }
    else:
        fields = dict(TypedTransaction.from_bytes(HexBytes(data)).as_dict())
    call: dict[str, Any] = {
        "from": sender,
        "input": "0x" + bytes(fields["data"]).hex(),
        "gas": hex(fields["gas"]),
        "value": hex(fields["value"]),
        "nonce": hex(fields["nonce"]),
    }
    if fields.get("to"):
        call["to"] = "0x" + bytes(fields["to"]).hex()
    for name in ("maxFeePerGas", "maxPriorityFeePerGas", "gasPrice"):
        if name in fields:
            call[name] = hex(fields[name])
    return DecodedTx("0x" + keccak(data).hex(), sender, fields["nonce"], call)


def _int(value: bytes) -> int:
    return int.from_bytes(value, "big")


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
