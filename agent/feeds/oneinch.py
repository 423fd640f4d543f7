"""1inch Swap API v6.0: quotes (the best-execution reference) and swap transactions.

Endpoints (``Authorization: Bearer <key>``), base ``https://api.1inch.dev/swap/v6.0/{chain}``:

* ``GET /quote?src&dst&amount[&includeGas=true]`` -> ``{"dstAmount": "<int>", "gas"?: int, ...}``
* ``GET /swap?src&dst&amount&from&slippage[&receiver&disableEstimate]`` ->
  ``{"dstAmount": "<int>", "tx": {"from","to","data","value","gas","gasPrice"}}``

Amounts are decimal strings of the smallest unit on the wire and ``int`` here. ``slippage`` is
a percentage (``0.5`` = 0.5 %), allowed range 0..50.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import aiohttp

from agent.errors import ConfigError
from agent.feeds.http import (
    HttpSource,
    ReadingBook,
    SourcePolicy,
    read_into,
    require,
    require_int,
)
from agent.types import Reading

DEFAULT_BASE_URL = "https://api.1inch.dev/swap/v6.0"
# The free tier allows one request per second.
DEFAULT_POLICY = SourcePolicy(rate_per_s=1.0, burst=1, max_age_s=30.0)


@dataclass(frozen=True, slots=True)
class QuotePair:
    """A configured quote to poll: sell ``amount_in`` (smallest units) of ``src`` for ``dst``."""

    src: str
    dst: str
    amount_in: int


@dataclass(frozen=True, slots=True)
class OneInchQuote:
    """Best aggregated output for ``amount_in`` of ``src``; amounts in smallest units."""

    src: str
    dst: str
    amount_in: int
    amount_out: int
    gas: int | None = None


@dataclass(frozen=True, slots=True)
class OneInchTx:
    """A ready-to-sign transaction from ``/swap``; wei amounts as int, ``data`` hex string."""

    from_address: str
    to: str
    data: str
    value_wei: int
    gas: int
    gas_price_wei: int


@dataclass(frozen=True, slots=True)
class OneInchSwap:
    quote: OneInchQuote
    tx: OneInchTx


class QuoteSource(Protocol):
    """What the engine uses of an aggregator quote feed (real 1inch or ``sim.SimOneInchClient``)."""

    source: str
    pairs: tuple[QuotePair, ...]

    async def quote(self, src: str, dst: str, amount_in: int) -> OneInchQuote: ...

    async def poll(self) -> dict[QuotePair, Reading[OneInchQuote]]: ...

    def reading(self, pair: QuotePair) -> Reading[OneInchQuote] | None: ...


class OneInchClient:
    """1inch Swap API v6.0 for one chain; ``poll()`` refreshes every configured pair."""

    source = "1inch"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_key: str,
        chain_id: int,
        *,
        pairs: Sequence[QuotePair] = (),
        base_url: str = DEFAULT_BASE_URL,
        policy: SourcePolicy = DEFAULT_POLICY,
        max_concurrency: int = 4,
        logger: logging.Logger | None = None,
    ) -> None:
        if not api_key:
            raise ConfigError("feeds.oneinch.api_key is required for the 1inch feed")
        self.chain_id = chain_id
        self.pairs = tuple(pairs)
        self.max_concurrency = max(1, max_concurrency)
        self.http = HttpSource(
            session,
            self.source,
            f"{base_url.rstrip('/')}/{chain_id}",
            policy,
            headers={"Authorization": f"Bearer {api_key}"},
            secrets=[api_key],
            logger=logger if logger is not None else logging.getLogger("agent.feeds.oneinch"),
        )
        self.book: ReadingBook[QuotePair, OneInchQuote] = ReadingBook(self.source, policy.max_age_s)

    async def quote(
        self,
        src: str,
        dst: str,
        amount_in: int,
        *,
        include_gas: bool = True,
        protocols: str | None = None,
    ) -> OneInchQuote:
        """Best output for selling ``amount_in`` (smallest units) of ``src`` for ``dst``."""
        params: dict[str, str | int | float] = {"src": src, "dst": dst, "amount": str(amount_in)}
        if include_gas:
            params["includeGas"] = "true"
        if protocols:
            params["protocols"] = protocols
        payload = await self.http.get_json("/quote", params)
        return _parse_quote(payload, src, dst, amount_in)

    async def build_swap(
        self,
        src: str,
        dst: str,
        amount_in: int,
        from_address: str,
        slippage_pct: Decimal | float,
        *,
        receiver: str | None = None,
        disable_estimate: bool = False,
    ) -> OneInchSwap:
        """Swap calldata selling ``amount_in`` of ``src`` from ``from_address``.

        ``slippage_pct`` is a percentage (0.5 = 0.5 %); 1inch derives the minimum output from it.
        """
        slippage = Decimal(str(slippage_pct))
        if not Decimal(0) <= slippage <= Decimal(50):
            raise ConfigError("slippage_pct must be between 0 and 50 (percent)")
        params: dict[str, str | int | float] = {
            "src": src,
            "dst": dst,
            "amount": str(amount_in),
            "from": from_address,
            "origin": from_address,
            "slippage": format(slippage.normalize(), "f"),
        }
        if receiver:
            params["receiver"] = receiver
        if disable_estimate:
            params["disableEstimate"] = "true"
        payload = await self.http.get_json("/swap", params)
        quote = _parse_quote(payload, src, dst, amount_in)
        tx = require(payload, "tx")
        return OneInchSwap(
            quote=quote,
            tx=OneInchTx(
                from_address=str(require(tx, "from")),
                to=str(require(tx, "to")),
                data=str(require(tx, "data")),
                value_wei=require_int(tx, "value"),
                gas=require_int(tx, "gas"),
                gas_price_wei=require_int(tx, "gasPrice"),
            ),
        )

    async def poll(self) -> dict[QuotePair, Reading[OneInchQuote]]:
        """Quote every configured pair; failures leave the last quote marked stale.

        Quotes run concurrently (at most ``max_concurrency`` in flight); the source's token
        bucket still caps the request rate, so this only hides latency.
        """
        semaphore = asyncio.Semaphore(self.max_concurrency)

        async def one(pair: QuotePair) -> Reading[OneInchQuote]:
            async def fetch() -> OneInchQuote:
                return await self.quote(pair.src, pair.dst, pair.amount_in)

            async with semaphore:
                return await read_into(self.book, pair, fetch, self.http.redactor, self.http.log)

        readings = await asyncio.gather(*(one(pair) for pair in self.pairs))
        return dict(zip(self.pairs, readings, strict=True))

    def reading(self, pair: QuotePair) -> Reading[OneInchQuote] | None:
        return self.book.get(pair)


def _parse_quote(payload: Any, src: str, dst: str, amount_in: int) -> OneInchQuote:
    gas = payload.get("gas") if isinstance(payload, dict) else None
    return OneInchQuote(
        src=src,
        dst=dst,
        amount_in=amount_in,
        amount_out=require_int(payload, "dstAmount"),
        gas=int(gas) if isinstance(gas, int) and not isinstance(gas, bool) else None,
    )
