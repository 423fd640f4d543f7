"""``eth_getLogs`` over any block range, within a provider's limits.

A range is cut into pieces of at most ``limits.logs_max_block_range`` blocks, sent in one
JSON-RPC batch (``RpcClient`` splits it further if the batch is too big). A piece the provider
refuses as too large (too many blocks or too many results: ``agent.chain.limits``) is split
(at the range the provider suggests, else in half) and asked again, down to a single block;
a single block still refused raises ``LogQueryRefused``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agent.chain.limits import ProviderLimits, log_range_refusal
from agent.errors import LogQueryRefused, RpcResponseError

BlockRange = tuple[int, int]


def plan_log_ranges(from_block: int, to_block: int, limits: ProviderLimits) -> list[BlockRange]:
    """``[from_block, to_block]`` cut into inclusive pieces of at most the block-range cap."""
    step = limits.logs_max_block_range
    return [
        (start, min(to_block, start + step - 1)) for start in range(from_block, to_block + 1, step)
    ]


def log_request(log_filter: Mapping[str, Any], piece: BlockRange) -> tuple[str, list[Any]]:
    """The ``eth_getLogs`` call for ``log_filter`` (address, topics) over ``piece``."""
    return (
        "eth_getLogs",
        [{**log_filter, "fromBlock": hex(piece[0]), "toBlock": hex(piece[1])}],
    )


def split_refused(piece: BlockRange, suggested: BlockRange | None) -> list[BlockRange]:
    """Two smaller ranges covering ``piece``: up to the end the provider suggested when that
    is inside the piece, else the two halves. A single block cannot be split."""
    start, end = piece
    if start >= end:
        raise ValueError("a single block cannot be split")
    cut = (start + end) // 2
    if suggested is not None and suggested[0] == start and start <= suggested[1] < end:
        cut = suggested[1]
    return [(start, cut), (cut + 1, end)]


async def get_logs(
    rpc: Any,
    log_filter: Mapping[str, Any],
    from_block: int,
    to_block: int,
    limits: ProviderLimits,
    *,
    answered: Mapping[BlockRange, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Every log matching ``log_filter`` in ``[from_block, to_block]``, in block order.

    ``rpc`` is a ``JsonRpcBatcher`` (an ``RpcClient``). ``answered`` holds replies already
    received for some pieces (a refresh that sent its log query in its own batch): they are
    used, and split if refused, instead of being asked again. Raises ``RpcResponseError`` for
    another error answer, ``LogQueryRefused`` when one block is still too much.
    """
    pending: list[BlockRange] = (
        sorted(answered) if answered else plan_log_ranges(from_block, to_block, limits)
    )
    replies: dict[BlockRange, dict[str, Any]] = dict(answered or {})
    done: dict[BlockRange, list[dict[str, Any]]] = {}
    while pending:
        ask = [piece for piece in pending if piece not in replies]
        if ask:
            got = await rpc.batch([log_request(log_filter, piece) for piece in ask])
            replies.update(zip(ask, got, strict=True))
        retry: list[BlockRange] = []
        for piece in pending:
            reply = replies.pop(piece)
            error = reply.get("error")
            if error is None and isinstance(reply.get("result"), list):
                done[piece] = reply["result"]
                continue
            refusal = log_range_refusal(error)
            if refusal is None:
                raise RpcResponseError("eth_getLogs", error or {"message": "no result"})
            if piece[0] == piece[1]:
                raise LogQueryRefused(
                    f"eth_getLogs refused for block {piece[0]}: {refusal.message}"
                )
            retry.extend(split_refused(piece, refusal.suggested))
        pending = retry
    return [entry for piece in sorted(done) for entry in done[piece]]


def all_answered(replies: Sequence[dict[str, Any]]) -> bool:
    """Whether every reply to a batch of log queries carries logs (no refusal, no error)."""
    return all("error" not in r and isinstance(r.get("result"), list) for r in replies)
