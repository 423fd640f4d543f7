"""Batch many contract reads into Multicall3 ``aggregate3`` calls (allowFailure) pinned to a block.

Calls are ``(target, calldata)`` pairs whose calldata the caller encodes once (no web3 contract
objects on the hot path). They are split into chunks bounded by call count and calldata bytes;
each chunk is one ``eth_call``, and all chunks of a batch travel in one JSON-RPC batch (one HTTP
request). A call that reverts, a chunk the node refuses, or a transport failure comes back as
``CallResult(success=False, error=...)`` for each call concerned, never as zero bytes that decode
to 0. The block every result was read at is reported: the given block, or, for ``latest``, the
number Multicall3's own ``getBlockNumber()`` returned inside the same call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agent.chain.abi import selector
from agent.errors import AgentError, MulticallError

MULTICALL3_ADDRESS = "0xcA11bde05977b3631167028862bE2a173976CA11"

_AGGREGATE3 = selector("aggregate3((address,bool,bytes)[])")
_GET_BLOCK_NUMBER = selector("getBlockNumber()")


class JsonRpcBatcher(Protocol):
    """Anything that sends JSON-RPC calls in one batch and returns the response objects in
    order (``agent.chain.rpc.RpcClient`` does; ``Web3Batcher`` adapts an ``AsyncWeb3``)."""

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[dict[str, Any]]: ...


class Web3Batcher:
    """Adapts an ``AsyncWeb3`` (any HTTP provider) to ``JsonRpcBatcher`` via the provider's
    own batch request, skipping web3's middleware and formatters."""

    def __init__(self, w3: Any) -> None:
        self._provider = w3.provider

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[dict[str, Any]]:
        if len(calls) == 1:
            method, params = calls[0]
            return [dict(await self._provider.make_request(method, list(params)))]
        replies = await self._provider.make_batch_request([(m, list(p)) for m, p in calls])
        if isinstance(replies, dict):
            # a node that rejects the whole batch answers with one error object
            return [dict(replies) for _ in calls]
        return [dict(reply) for reply in replies]


@dataclass(frozen=True, slots=True)
class Call:
    """One read: ``calldata`` (selector + ABI-encoded args) sent to ``target``."""

    target: str
    calldata: bytes


@dataclass(frozen=True, slots=True)
class CallResult:
    """Outcome of one call. ``return_data`` is only meaningful when ``success``."""

    success: bool
    return_data: bytes = b""
    error: str | None = None


@dataclass(frozen=True, slots=True)
class MulticallResult:
    """Results in call order, the block they were read at, and the JSON-RPC calls used."""

    block_number: int | None
    results: list[CallResult]
    rpc_calls: int


class Multicall:
    """Reads through Multicall3 at ``address``.

    ``max_calls_per_chunk`` and ``max_calldata_bytes`` keep each ``eth_call`` under node limits
    (payload size and the eth_call gas cap: a ``ticks()`` read costs ~10k gas); chunks are
    sent as JSON-RPC batches of at most ``max_request_bytes`` of hex calldata per HTTP request.
    """

    def __init__(
        self,
        rpc: JsonRpcBatcher,
        *,
        address: str = MULTICALL3_ADDRESS,
        max_calls_per_chunk: int = 500,
        max_calldata_bytes: int = 120_000,
        max_request_bytes: int = 1_000_000,
    ) -> None:
        self.rpc = rpc
        self.address = address
        self.max_calls_per_chunk = max_calls_per_chunk
        self.max_calldata_bytes = max_calldata_bytes
        self.max_request_bytes = max_request_bytes
        self._block_call = Call(address, _GET_BLOCK_NUMBER)
        # encoded aggregate3 calldata of repeated batches (the per-block refresh set)
        self._encoded_cache: dict[tuple[Call, ...], list[str]] = {}

    def chunk(self, calls: Sequence[Call]) -> list[list[Call]]:
        """Split ``calls`` into chunks within the call-count and calldata-size limits."""
        chunks: list[list[Call]] = []
        current: list[Call] = []
        size = 0
        for call in calls:
            # each entry costs its calldata padded to 32 bytes plus 5 words of ABI framing
            cost = (len(call.calldata) + 31) // 32 * 32 + 160
            if current and (
                len(current) >= self.max_calls_per_chunk or size + cost > self.max_calldata_bytes
            ):
                chunks.append(current)
                current, size = [], 0
            current.append(call)
            size += cost
        if current:
            chunks.append(current)
        return chunks

    def _encode_chunks(self, calls: Sequence[Call], cache: bool) -> list[str]:
        key = tuple(calls)
        if cache and key in self._encoded_cache:
            return self._encoded_cache[key]
        encoded = []
        for chunk in self.chunk(calls):
            encoded.append("0x" + encode_aggregate3([*chunk, self._block_call]).hex())
        if cache:
            if len(self._encoded_cache) > 64:
                self._encoded_cache.clear()
            self._encoded_cache[key] = encoded
        return encoded

    def build_requests(
        self, calls: Sequence[Call], block: int | None, *, cache_encoding: bool = False
    ) -> list[tuple[str, list[Any]]]:
        """The ``eth_call`` JSON-RPC requests (one per chunk) reading ``calls`` at ``block``,
        for callers that send them in a batch of their own (with an ``eth_getLogs``, say).
        ``cache_encoding`` keeps the encoded calldata for an identical call list next time."""
        tag = hex(block) if block is not None else "latest"
        return [
            ("eth_call", [{"to": self.address, "data": data}, tag])
            for data in self._encode_chunks(calls, cache_encoding)
        ]

    def decode_replies(
        self, calls: Sequence[Call], replies: Sequence[dict[str, Any]]
    ) -> tuple[set[int], list[CallResult]]:
        """Results in call order from the replies to ``build_requests``, and the block numbers
        the chunks reported. A failed chunk yields a failure for each of its calls."""
        blocks: set[int] = set()
        results: list[CallResult] = []
        for chunk, reply in zip(self.chunk(calls), replies, strict=True):
            block_number, chunk_results = _decode_reply(reply, len(chunk))
            if block_number is not None:
                blocks.add(block_number)
            results.extend(chunk_results)
        return blocks, results

    async def aggregate(
        self, calls: Sequence[Call], block: int | None = None, *, cache_encoding: bool = False
    ) -> MulticallResult:
        """Run ``calls`` at ``block`` (``None`` = latest, pinned by the chunks' own answer).

        Never raises for failed calls, chunks or requests: those results are failures. Raises
        ``MulticallError`` only when ``latest`` chunks disagree on the block and re-reading them
        at one block fails too.
        """
        if not calls:
            return MulticallResult(block, [], 0)
        requests = self.build_requests(calls, block, cache_encoding=cache_encoding)
        replies = await self._send(requests)
        rpc_calls = len(requests)
        blocks, results = self.decode_replies(calls, replies)
        if block is None and len(blocks) > 1:
            # a block arrived between chunks: re-read every chunk at the first one's block
            pinned = min(blocks)
            requests = self.build_requests(calls, pinned, cache_encoding=cache_encoding)
            replies = await self._send(requests)
            rpc_calls += len(requests)
            blocks, results = self.decode_replies(calls, replies)
            if blocks - {pinned}:
                raise MulticallError("chunks were read at different blocks")
        block_number = block if block is not None else (min(blocks) if blocks else None)
        return MulticallResult(block_number, results, rpc_calls)

    async def _send(self, requests: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
        # nodes cap the HTTP body (Anvil at a few MB): big batches go as several requests
        groups: list[list[tuple[str, list[Any]]]] = [[]]
        size = 0
        for request in requests:
            request_size = len(request[1][0]["data"])
            if groups[-1] and size + request_size > self.max_request_bytes:
                groups.append([])
                size = 0
            groups[-1].append(request)
            size += request_size
        answers = await asyncio.gather(*(self._send_group(group) for group in groups))
        return [reply for answer in answers for reply in answer]

    async def _send_group(self, requests: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
        try:
            return await self.rpc.batch(requests)
        except AgentError as exc:
            failure = {"error": {"message": f"request failed: {type(exc).__name__}: {exc}"}}
            return [failure for _ in requests]


# --- aggregate3 ABI, by hand: its layout is fixed, and eth_abi's generic coder took most of the
# time of a 10,000-pool first load (about 6 s of 10) ----------------------------------------------


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def encode_aggregate3(calls: Sequence[Call]) -> bytes:
    """Calldata of ``aggregate3((address,bool,bytes)[])`` with allowFailure set on every call
    (what ``eth_abi.encode`` gives, without its per-value validation)."""
    heads: list[bytes] = []
    tails: list[bytes] = []
    offset = 32 * len(calls)
    for call in calls:
        heads.append(_word(offset))
        padded = call.calldata + b"\0" * (-len(call.calldata) % 32)
        target = bytes.fromhex(call.target[2:])
        if len(target) != 20:
            raise ValueError(f"not an address: {call.target}")
        tail = b"".join(
            (b"\0" * 12 + target, _word(1), _word(96), _word(len(call.calldata)), padded)
        )
        tails.append(tail)
        offset += len(tail)
    return b"".join((_AGGREGATE3, _word(32), _word(len(calls)), *heads, *tails))


def decode_aggregate3_result(raw: bytes) -> list[tuple[bool, bytes]]:
    """``(success, returnData)`` of each call from aggregate3's ``(bool,bytes)[]`` answer.
    Raises ``ValueError`` when an offset or length points outside the answer."""

    def word(at: int) -> int:
        if at + 32 > len(raw):
            raise ValueError("aggregate3 answer is truncated")
        return int.from_bytes(raw[at : at + 32], "big")

    start = word(0) + 32
    count = word(start - 32)
    if count > len(raw) // 32:
        raise ValueError("aggregate3 answer is truncated")
    results: list[tuple[bool, bytes]] = []
    for index in range(count):
        entry = start + word(start + 32 * index)
        data_at = entry + word(entry + 32)
        length = word(data_at)
        if data_at + 32 + length > len(raw):
            raise ValueError("aggregate3 answer is truncated")
        results.append((word(entry) != 0, raw[data_at + 32 : data_at + 32 + length]))
    return results


def _decode_reply(reply: dict[str, Any], expected: int) -> tuple[int | None, list[CallResult]]:
    if "error" in reply:
        error = reply["error"]
        message = error.get("message", "") if isinstance(error, dict) else str(error)
        failure = CallResult(False, b"", f"eth_call error: {message}")
        return None, [failure] * expected
    try:
        block_number, results = _decode_aggregate3(reply.get("result"))
        if len(results) != expected:
            raise ValueError(f"{len(results)} results for {expected} calls")
    except (ValueError, TypeError) as exc:
        failure = CallResult(False, b"", f"undecodable multicall answer: {exc}")
        return None, [failure] * expected
    return block_number, results


def _decode_aggregate3(result: Any) -> tuple[int | None, list[CallResult]]:
    if not isinstance(result, str) or not result.startswith("0x"):
        raise ValueError("eth_call result is not hex")
    *call_entries, (block_ok, block_data) = decode_aggregate3_result(bytes.fromhex(result[2:]))
    block_number = int.from_bytes(block_data, "big") if block_ok and len(block_data) == 32 else None
    results = [
        CallResult(True, bytes(data)) if ok else CallResult(False, bytes(data), "reverted")
        for ok, data in call_entries
    ]
    return block_number, results
