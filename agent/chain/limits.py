"""What an RPC provider accepts, and how it says no.

Providers cap the JSON-RPC calls in one batch, the bytes of one HTTP body, the block range and
the result count of one ``eth_getLogs``, and the requests per second. ``ProviderLimits`` holds
those caps (``[chain.limits]`` in agent.toml); ``RpcClient`` splits batches and paces requests
by them, and ``agent.chain.logs.get_logs`` plans log ranges by them.

A provider that refuses a log query answers with a JSON-RPC error, not an HTTP failure, and the
code differs per provider: Infura says ``-32005 query returned more than 10000 results`` (the
same code it uses for rate limits), Alchemy ``-32602 ... block range ...``. Such an answer is a
request to ask for less, never a reason to back off or to fail the batch around it:
``log_range_refusal`` recognises it (and the range the provider suggests, when it names one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Codes providers answer an oversized eth_getLogs with: Infura -32005, Alchemy -32602,
# geth/erigon/QuickNode/Ankr -32000 or -32001, some -32614 / -32701.
_LOG_REFUSAL_CODES = frozenset({-32005, -32602, -32000, -32001, -32614, -32701})
_LOG_REFUSAL_WORDS = re.compile(
    r"block range|range (is )?too (large|wide|big)|exceeds? (the )?(max(imum)?|limit)"
    r"|more than [\d,]+ (results|logs)|response size (exceeded|is too big)|too many (results|logs)"
    r"|limited to a? ?[\d,]+ ?(block )?range|query timeout exceeded|log response size",
    re.IGNORECASE,
)
_SUGGESTED_RANGE = re.compile(r"\[\s*(0x[0-9a-fA-F]+)\s*,\s*(0x[0-9a-fA-F]+)\s*\]")


@dataclass(frozen=True, slots=True)
class ProviderLimits:
    """Caps every read respects. ``requests_per_s`` 0 = no pacing (a 429 is still retried
    with backoff)."""

    max_calls_per_batch: int = 100
    max_request_bytes: int = 2_000_000
    logs_max_block_range: int = 2_000
    logs_max_results: int = 10_000
    requests_per_s: float = 0.0

    def __post_init__(self) -> None:
        if min(self.max_calls_per_batch, self.max_request_bytes, self.logs_max_block_range) < 1:
            raise ValueError("provider limits must be at least 1")
        if self.logs_max_results < 1 or self.requests_per_s < 0:
            raise ValueError("logs_max_results must be >= 1 and requests_per_s >= 0")


UNLIMITED = ProviderLimits(
    max_calls_per_batch=10**9,
    max_request_bytes=10**12,
    logs_max_block_range=10**12,
    logs_max_results=10**12,
)
"""No caps at all: what a client built without limits does (tests, a local node)."""


@dataclass(frozen=True, slots=True)
class LogRangeRefusal:
    """A provider refused an eth_getLogs as too large; ``suggested`` is the ``(from, to)``
    range it named as acceptable, when it named one."""

    message: str
    suggested: tuple[int, int] | None


def log_range_refusal(error: Any) -> LogRangeRefusal | None:
    """The refusal in a JSON-RPC ``error`` object, or None when it is some other error."""
    if not isinstance(error, dict):
        return None
    code = error.get("code")
    message = str(error.get("message", ""))
    if code not in _LOG_REFUSAL_CODES or not _LOG_REFUSAL_WORDS.search(message):
        return None
    found = _SUGGESTED_RANGE.search(message)
    suggested = (int(found.group(1), 16), int(found.group(2), 16)) if found else None
    return LogRangeRefusal(message, suggested)
