"""1inch Swap API v6.0: quotes (the best-execution reference) and swap transactions.

Endpoints (``Authorization: Bearer <key>``), base ``https://api.1inch.dev/swap/v6.0/{chain}``:

* ``GET /quote?src&dst&amount[&includeGas=true]`` -> ``{"dstAmount": "<int>", "gas"?: int, ...}``
* ``GET /swap?src&dst&amount&from&slippage[&receiver&disableEstimate]`` ->
  ``{"dstAmount": "<int>", "tx": {"from","to","data","value","gas","gasPrice"}}``

Amounts are decimal strings of the smallest unit on the wire and ``int`` here. ``slippage`` is
a percentage (``0.5`` = 0.5 %), allowed range 0..50.

``decode_router_call`` reads the calldata ``/swap`` returns for AggregationRouterV6 (the
``swap`` and ``unoswap`` families), so the signing policy can hold it to the intent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import aiohttp
from eth_abi import decode
from eth_abi.exceptions import DecodingError
from eth_utils.address import to_checksum_address

from agent.chain.abi import selector
from agent.errors import ConfigError, UnknownRouterCall
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


# ---------------------------------------------------------------------------------------------
# AggregationRouterV6 calldata

_SWAP_DESCRIPTION = "(address,address,address,address,uint256,uint256,uint256)"
SEL_SWAP = selector(f"swap(address,{_SWAP_DESCRIPTION},bytes)")
# ``Address`` in the router's ABI is a uint256: the address in the low 160 bits, flags above.
_UNOSWAP_FAMILY: dict[bytes, tuple[str, bool, int]] = {
    # selector -> (name, has a receiver first, number of pools)
    selector(f"{name}({','.join(['uint256'] * arity)})"): (name, to, pools)
    for name, to, pools, arity in (
        ("unoswap", False, 1, 4),
        ("unoswap2", False, 2, 5),
        ("unoswap3", False, 3, 6),
        ("unoswapTo", True, 1, 5),
        ("unoswapTo2", True, 2, 6),
        ("unoswapTo3", True, 3, 7),
    )
}
# SwapDescription.flags: partial fills change what minReturnAmount means (pro rata), extra ETH
# means value attached. Neither is a trade the agent asks for.
SWAP_FLAG_PARTIAL_FILL = 1 << 0
SWAP_FLAG_REQUIRES_EXTRA_ETH = 1 << 1
_ADDRESS_MASK = (1 << 160) - 1


@dataclass(frozen=True, slots=True)
class RouterCall:
    """What an AggregationRouterV6 call does, as far as its calldata says. Amounts in smallest
    units. ``dst_token`` is ``None`` for the unoswap family (the pools decide it; the simulated
    balance change proves it); ``receiver`` is ``None`` when the router pays ``msg.sender``."""

    function: str
    src_token: str
    dst_token: str | None
    amount: int
    min_return: int
    receiver: str | None
    flags: int = 0


def decode_router_call(calldata: bytes) -> RouterCall:
    """Decode ``swap(executor, desc, data)`` or an ``unoswap*``; ``UnknownRouterCall`` for any
    other selector or malformed arguments."""
    selector, payload = calldata[:4], calldata[4:]
    try:
        if selector == SEL_SWAP:
            _, desc, _ = decode(["address", _SWAP_DESCRIPTION, "bytes"], payload)
            src, dst, _, dst_receiver, amount, min_return, flags = desc
            receiver = None if int(dst_receiver, 16) == 0 else to_checksum_address(dst_receiver)
            return RouterCall(
                "swap",
                to_checksum_address(src),
                to_checksum_address(dst),
                int(amount),
                int(min_return),
                receiver,
                int(flags),
            )
        family = _UNOSWAP_FAMILY.get(selector)
        if family is not None:
            name, has_receiver, pools = family
            words = decode(["uint256"] * (3 + pools + int(has_receiver)), payload)
            to = _address(words[0]) if has_receiver else None
            token, amount, min_return = words[int(has_receiver) : int(has_receiver) + 3]
            return RouterCall(name, _address(token), None, int(amount), int(min_return), to)
    except (DecodingError, ValueError, OverflowError) as exc:
        raise UnknownRouterCall(f"malformed 1inch router calldata: {exc}") from None
    raise UnknownRouterCall(f"unknown 1inch router function 0x{selector.hex()}")


def _address(word: int) -> str:
    return to_checksum_address((word & _ADDRESS_MASK).to_bytes(20, "big"))
