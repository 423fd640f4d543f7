"""Real (credentialed) feed clients from ``agent.config.models.FeedsConfig``.

The engine owns the one ``aiohttp.ClientSession`` and passes it in; this module only builds
clients and their :class:`Poller` objects (it starts nothing). The engine runs each poller's
``run`` in its task group (or ``start``/``aclose``) and calls :meth:`FeedSet.aclose` at shutdown
to release the ccxt clients. Secrets are unwrapped from ``SecretStr`` here and nowhere else.

Token references in the config (``WETH`` or a 0x address) are resolved against ``tokens``
(symbol -> :class:`Token`); a reference to an unknown token is a ``ConfigError`` naming the field.
The 1inch reference quote sells one whole unit of the pair's base token.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp

from agent.config.models import FeedsConfig
from agent.errors import ConfigError
from agent.feeds.cex import DEFAULT_POLICY as CEX_POLICY
from agent.feeds.cex import CexClient
from agent.feeds.coingecko import DEFAULT_POLICIES as COINGECKO_POLICIES
from agent.feeds.coingecko import CoinGeckoClient
from agent.feeds.oneinch import OneInchClient, QuotePair
from agent.feeds.readings import Poller
from agent.feeds.sentiment import SentimentAggregator, SentimentFeed
from agent.feeds.x import DEFAULT_POLICY as X_POLICY
from agent.feeds.x import XClient
from agent.resilience import SourcePolicy
from agent.types import Token


@dataclass
class FeedSet:
    """The configured real feeds. Address maps give the on-chain token each key prices."""

    oneinch: OneInchClient | None = None
    cex: list[CexClient] = field(default_factory=list)
    cex_symbols: dict[str, str] = field(default_factory=dict)  # "ETH/USDT" -> token address
    coingecko: CoinGeckoClient | None = None
    coingecko_tokens: dict[str, str] = field(default_factory=dict)  # symbol -> token address
    sentiment: SentimentFeed | None = None
    sentiment_tokens: dict[str, str] = field(default_factory=dict)  # symbol -> token address
    pollers: list[Poller] = field(default_factory=list)

    def runners(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        """What the engine runs in its task group (cancelling them stops the feeds): every
        poller's loop and the websocket streams of CEX clients that stream."""
        runners: list[Callable[[], Coroutine[Any, Any, None]]] = [p.run for p in self.pollers]
        runners += [client.watch for client in self.cex if client.use_websocket]
        return runners

    async def aclose(self) -> None:
        """Stop pollers started with ``Poller.start`` and release the ccxt clients."""
        for poller in self.pollers:
            await poller.aclose()
        for client in self.cex:
            await client.close()


def _resolve(ref: str, tokens: Mapping[str, Token], where: str) -> Token:
    if ref in tokens:
        return tokens[ref]
    for token in tokens.values():
        if token.address.lower() == ref.lower():
            return token
    raise ConfigError(f"{where}: unknown token {ref!r}")


def _secret(value: object) -> str | None:
    getter = getattr(value, "get_secret_value", None)
    return str(getter()) if callable(getter) else None


def build_feeds(
    cfg: FeedsConfig,
    session: aiohttp.ClientSession,
    tokens: Mapping[str, Token],
    chain_id: int,
) -> FeedSet:
    """Clients and pollers for every enabled feed in ``cfg`` (none for ``cfg.simulated``)."""
    feeds = FeedSet()
    if cfg.simulated:
        return feeds

    if cfg.oneinch.enabled:
        api_key = _secret(cfg.oneinch.api_key)
        if not api_key:
            raise ConfigError("feeds.oneinch.api_key: required when enabled")
        pairs = []
        for i, pair in enumerate(cfg.oneinch.pairs):
            base_ref, quote_ref = pair.split("/")
            base = _resolve(base_ref, tokens, f"feeds.oneinch.pairs[{i}]")
            quote = _resolve(quote_ref, tokens, f"feeds.oneinch.pairs[{i}]")
            pairs.append(QuotePair(base.address, quote.address, 10**base.decimals))
        feeds.oneinch = OneInchClient(
            session,
            api_key,
            chain_id,
            pairs=pairs,
            base_url=cfg.oneinch.base_url,
            policy=SourcePolicy(
                rate_per_s=cfg.oneinch.requests_per_s, burst=1, max_age_s=cfg.oneinch.max_age_s
            ),
        )
        feeds.pollers.append(
            Poller(
                "1inch",
                feeds.oneinch.poll,
                cfg.oneinch.poll_interval_s,
                redactor=feeds.oneinch.http.redactor,
            )
        )

    if cfg.cex.enabled:
        policy = _with_max_age(CEX_POLICY, cfg.cex.max_age_s)
        for exchange_id in cfg.cex.exchanges:
            credentials = cfg.cex.credentials.get(exchange_id)
            client = CexClient(
                session,
                exchange_id,
                cfg.cex.symbols,
                api_key=_secret(credentials.api_key) if credentials else None,
                secret=_secret(credentials.secret) if credentials else None,
                api_urls=cfg.cex.api_urls.get(exchange_id),
                policy=policy,
                use_websocket=cfg.cex.use_websocket,
            )
            feeds.cex.append(client)
            if not client.use_websocket:
                feeds.pollers.append(
                    Poller(
                        client.source,
                        client.poll,
                        cfg.cex.poll_interval_s,
                        redactor=client.redactor,
                    )
                )
        for symbol in cfg.cex.symbols:
            cex_asset = symbol.split("/")[0]
            ref = cfg.cex.token_map.get(cex_asset, cex_asset)
            if ref in tokens or ref.startswith("0x"):
                feeds.cex_symbols[symbol] = _resolve(
                    ref, tokens, f"feeds.cex.token_map.{cex_asset}"
                ).address

    if cfg.coingecko.enabled:
        coin_ids: dict[str, str] = {}
        for ref, coin_id in cfg.coingecko.coin_ids.items():
            token = _resolve(ref, tokens, f"feeds.coingecko.coin_ids.{ref}")
            coin_ids[token.symbol] = coin_id
            feeds.coingecko_tokens[token.symbol] = token.address
        feeds.coingecko = CoinGeckoClient(
            session,
            coin_ids,
            api_key=_secret(cfg.coingecko.api_key),
            plan=cfg.coingecko.plan,
            base_url=cfg.coingecko.effective_base_url,
            policy=_with_max_age(COINGECKO_POLICIES[cfg.coingecko.plan], cfg.coingecko.max_age_s),
        )
        feeds.pollers.append(
            Poller(
                "coingecko",
                feeds.coingecko.poll,
                cfg.coingecko.poll_interval_s,
                redactor=feeds.coingecko.http.redactor,
            )
        )

    if cfg.x.enabled:
        bearer = _secret(cfg.x.bearer_token)
        if not bearer:
            raise ConfigError("feeds.x.bearer_token: required when enabled")
        queries: dict[str, str] = {}
        for ref, query in cfg.x.queries.items():
            token = _resolve(ref, tokens, f"feeds.x.queries.{ref}")
            queries[token.symbol] = query
            feeds.sentiment_tokens[token.symbol] = token.address
        x_client = XClient(
            session,
            bearer,
            token_queries=queries,
            accounts=cfg.x.accounts,
            base_url=cfg.x.base_url,
            policy=_with_max_age(X_POLICY, cfg.x.max_age_s),
        )
        # One sample per poll: the baseline spans ``baseline_window_h`` of polls.
        baseline_len = max(2, int(cfg.x.baseline_window_h * 3600 / cfg.x.poll_interval_s))
        aggregator = SentimentAggregator(
            list(queries),
            baseline_len=baseline_len,
            coingecko_weight=cfg.sentiment.coingecko_weight if feeds.coingecko else 0.0,
        )
        feeds.sentiment = SentimentFeed(
            aggregator,
            x=x_client,
            coingecko=feeds.coingecko,
            poll_coingecko=False,  # the CoinGecko poller above refreshes it
            max_age_s=cfg.sentiment.max_age_s,
        )
        feeds.pollers.append(
            Poller(
                "sentiment",
                feeds.sentiment.poll,
                cfg.x.poll_interval_s,
                redactor=x_client.http.redactor,
            )
        )
    return feeds


def _with_max_age(policy: SourcePolicy, max_age_s: float) -> SourcePolicy:
    return replace(policy, max_age_s=max_age_s)
