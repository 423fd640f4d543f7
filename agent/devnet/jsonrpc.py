"""A bare JSON-RPC client for driving Anvil (deploys, cheat codes, batches).

The agent's own reads go through ``agent.chain.rpc`` (failover, retries, counters); the devnet
talks to a local node it started itself and wants nothing between it and the wire.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

import aiohttp

from agent.errors import JsonRpcError


class JsonRpc:
    """JSON-RPC over HTTP to one URL; owns its aiohttp session unless one is passed in."""

    def __init__(self, url: str, session: aiohttp.ClientSession | None = None) -> None:
        self.url = url
        self._session = session
        self._owns_session = session is None
        self._next_id = 0

    async def _post(self, body: Any) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        async with self._session.post(self.url, json=body) as response:
            return await response.json(content_type=None)

    async def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        self._next_id += 1
        reply = await self._post(
            {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": list(params)}
        )
        if "error" in reply:
            raise JsonRpcError(method, reply["error"])
        return reply["result"]

    async def batch(self, requests: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Send many requests in one HTTP round trip; results in request order."""
        if not requests:
            return []
        first = self._next_id + 1
        self._next_id += len(requests)
        body = [
            {"jsonrpc": "2.0", "id": first + i, "method": method, "params": list(params)}
            for i, (method, params) in enumerate(requests)
        ]
        replies = {r["id"]: r for r in await self._post(body)}
        results = []
        for i, (method, _params) in enumerate(requests):
            reply = replies[first + i]
            if "error" in reply:
                raise JsonRpcError(method, reply["error"])
            results.append(reply["result"])
        return results

    async def aclose(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> JsonRpc:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
