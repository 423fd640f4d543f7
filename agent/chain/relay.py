"""A bundle relay (Flashbots-style ``eth_callBundle`` / ``eth_sendBundle``) over HTTP.

Every request is signed with the reputation key, never the trading key: the header
``X-Flashbots-Signature: <address>:<signature>`` carries the EIP-191 ``personal_sign``
signature of the hex keccak256 of the exact request body (``flashbots_signature``). A relay
refuses a missing or wrong signature with HTTP 403 and a JSON-RPC error.

Shapes (docs.flashbots.net, "RPC endpoint"):

- ``eth_callBundle([{txs, blockNumber, stateBlockNumber}])`` -> ``{results: [{txHash,
  gasUsed, error?, revert?}, ...], bundleHash, stateBlockNumber, totalGasUsed, ...}``;
- ``eth_sendBundle([{txs, blockNumber}])`` -> ``{bundleHash}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from eth_utils.crypto import keccak

from agent.errors import RateLimitedError, RelayRejected, ServerError
from agent.redaction import redact_url
from agent.wallet.keystore import Signer

FLASHBOTS_SIGNATURE_HEADER = "X-Flashbots-Signature"


def flashbots_signature(reputation: Signer, body: bytes) -> str:
    """The ``X-Flashbots-Signature`` value for ``body``: ``<address>:<personal_sign of the
    0x-hex keccak256 of body>``."""
    return f"{reputation.address}:{reputation.sign_message('0x' + keccak(body).hex())}"


@dataclass(frozen=True, slots=True)
class BundleTxResult:
    """One transaction of a simulated bundle; ``error`` is set when it reverted."""

    tx_hash: str
    gas_used: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class BundleSimulation:
    """A relay's ``eth_callBundle`` answer: each transaction's result, in bundle order."""

    results: tuple[BundleTxResult, ...]
    state_block: int

    @property
    def revert_reason(self) -> str | None:
        """Why the bundle would not land (the first reverting transaction), or ``None``."""
        for result in self.results:
            if result.error is not None:
                return f"{result.tx_hash} reverts: {result.error}"
        return None


class RelayClient:
    """One relay endpoint; requests signed with ``reputation`` (a key that holds no funds)."""

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        reputation: Signer,
        timeout_s: float = 10.0,
    ) -> None:
        self.url = url
        self.name = redact_url(url)  # relay URLs may carry a key: only this is ever shown
        self._session = session
        self._reputation = reputation
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._ids = 0

    async def call_bundle(self, raw_txs: Sequence[bytes], block_number: int) -> BundleSimulation:
        """Simulate ``raw_txs`` in order on top of the latest state, as if in ``block_number``."""
        result = await self._request(
            "eth_callBundle",
            {
                "txs": _hex_txs(raw_txs),
                "blockNumber": hex(block_number),
                "stateBlockNumber": "latest",
            },
        )
        try:
            results = tuple(
                BundleTxResult(
                    tx_hash=str(item["txHash"]),
                    gas_used=int(item.get("gasUsed", 0)),
                    error=_tx_error(item),
                )
                for item in result["results"]
            )
            return BundleSimulation(results, int(result.get("stateBlockNumber", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise RelayRejected(self.name, f"eth_callBundle answer without results: {exc}") from exc

    async def send_bundle(self, raw_txs: Sequence[bytes], block_number: int) -> str:
        """Submit ``raw_txs`` for inclusion in ``block_number`` only; returns the bundle hash."""
        result = await self._request(
            "eth_sendBundle", {"txs": _hex_txs(raw_txs), "blockNumber": hex(block_number)}
        )
        if not isinstance(result, Mapping) or "bundleHash" not in result:
            raise RelayRejected(self.name, "eth_sendBundle answer without bundleHash")
        return str(result["bundleHash"])

    async def _request(self, method: str, params: Mapping[str, Any]) -> Any:
        self._ids += 1
        body = json.dumps(
            {"jsonrpc": "2.0", "id": self._ids, "method": method, "params": [params]}
        ).encode()
        headers = {
            "Content-Type": "application/json",
            FLASHBOTS_SIGNATURE_HEADER: flashbots_signature(self._reputation, body),
        }
        try:
            async with self._session.post(
                self.url, data=body, headers=headers, timeout=self._timeout
            ) as response:
                status = response.status
                text = await response.text()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ServerError(f"relay {self.name}: {method} failed: {type(exc).__name__}") from None
        if status == 429:
            raise RateLimitedError(f"relay {self.name}: HTTP 429")
        if status >= 500:
            raise ServerError(f"relay {self.name}: {method}: HTTP {status}")
        try:
            answer = json.loads(text)
        except ValueError:
            raise ServerError(f"relay {self.name}: {method}: HTTP {status}, not JSON") from None
        error = answer.get("error") if isinstance(answer, Mapping) else None
        if error is not None or status >= 400:
            message = error.get("message", error) if isinstance(error, Mapping) else error
            raise RelayRejected(self.name, f"{method}: HTTP {status}: {message}")
        return answer.get("result")


def _hex_txs(raw_txs: Sequence[bytes]) -> list[str]:
    return ["0x" + raw.hex() for raw in raw_txs]


def _tx_error(item: Mapping[str, Any]) -> str | None:
    error = item.get("error")
    if error is None:
        return None
    revert = item.get("revert")
    return f"{error} ({revert})" if revert else str(error)
