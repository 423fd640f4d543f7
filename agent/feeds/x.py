"""X API v2 recent search: posts about configured tokens and from configured accounts.

``GET https://api.twitter.com/2/tweets/search/recent`` with ``Authorization: Bearer <token>``,
``query``, ``max_results`` (10..100), ``tweet.fields=public_metrics,created_at``, ``since_id``
(only newer posts) and ``next_token`` (pagination, bounded by ``max_pages``). The response is
``{"data": [{"id", "text", "created_at", "public_metrics": {...}}], "meta": {"newest_id",
"next_token", "result_count"}}``; ``data`` is absent when nothing matched. A 429 carries
``x-rate-limit-reset`` (epoch seconds), honoured like Retry-After.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from agent.errors import ConfigError, ResponseShapeError
from agent.feeds.http import HttpSource, ReadingBook, SourcePolicy, read_into, require
from agent.types import Reading

DEFAULT_BASE_URL = "https://api.twitter.com/2"
# Recent search allows 450 requests / 15 min with an app bearer token (fewer on Basic).
DEFAULT_POLICY = SourcePolicy(rate_per_s=0.4, burst=3, max_age_s=600.0)
ACCOUNTS_KEY = "accounts"


@dataclass(frozen=True, slots=True)
class Post:
    """One post with its engagement counts. ``created_at`` is epoch seconds when X sent it."""

    post_id: int
    text: str
    created_at: float | None
    likes: int
    retweets: int
    replies: int
    quotes: int


def cashtag_queries(
    tokens: Sequence[str], *, max_query_len: int = 512, suffix: str = "-is:retweet"
) -> dict[str, str]:
    """Pack cashtags of many tokens into few OR-queries (one request each instead of one per
    token); keys are ``"batch:<n>"`` and posts are attributed to tokens by keyword.

    ``max_query_len`` is X's query length limit (512 on Basic, 1024 on Pro).
    """
    queries: dict[str, str] = {}
    group: list[str] = []

    def flush() -> None:
        if group:
            queries[f"batch:{len(queries)}"] = f"({' OR '.join(group)}) {suffix}".strip()
            group.clear()

    for token in tokens:
        tag = f"${token[1:] if token in ('WETH', 'WBTC') else token}"
        if len(f"({' OR '.join([*group, tag])}) {suffix}") > max_query_len:
            flush()
        group.append(tag)
    flush()
    return queries


class XClient:
    """Recent search per configured token query, plus one query for all configured accounts.

    ``token_queries`` maps a token symbol to an X query (``"WETH": "($ETH OR ethereum)
    -is:retweet lang:en"``). ``accounts`` are handles without ``@``; their posts come back under
    the key ``"accounts"`` and are attributed to tokens by the sentiment aggregator.
    """

    source = "x"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        bearer_token: str,
        *,
        token_queries: Mapping[str, str] | None = None,
        accounts: Sequence[str] = (),
        base_url: str = DEFAULT_BASE_URL,
        policy: SourcePolicy = DEFAULT_POLICY,
        max_pages: int = 2,
        max_results: int = 100,
        logger: logging.Logger | None = None,
    ) -> None:
        if not bearer_token:
            raise ConfigError("feeds.x.bearer_token is required for the X feed")
        if not 10 <= max_results <= 100:
            raise ConfigError("feeds.x.max_results must be between 10 and 100")
        self.queries: dict[str, str] = dict(token_queries or {})
        if accounts:
            handles = " OR ".join(f"from:{a.lstrip('@')}" for a in accounts)
            self.queries[ACCOUNTS_KEY] = f"({handles}) -is:retweet"
        self.max_pages = max(1, max_pages)
        self.max_results = max_results
        self.http = HttpSource(
            session,
            self.source,
            base_url,
            policy,
            headers={"Authorization": f"Bearer {bearer_token}"},
            secrets=[bearer_token],
            logger=logger if logger is not None else logging.getLogger("agent.feeds.x"),
        )
        self.book: ReadingBook[str, list[Post]] = ReadingBook(self.source, policy.max_age_s)
        self._newest_id: dict[str, int] = {}

    async def search_recent(self, query: str, since_id: int | None = None) -> list[Post]:
        """Posts matching ``query`` newer than ``since_id``, newest pages first, at most
        ``max_pages`` requests."""
        posts: list[Post] = []
        next_token: str | None = None
        for _ in range(self.max_pages):
            params: dict[str, str | int | float] = {
                "query": query,
                "max_results": self.max_results,
                "tweet.fields": "public_metrics,created_at",
            }
            if since_id is not None:
                params["since_id"] = str(since_id)
            if next_token:
                params["next_token"] = next_token
            payload = await self.http.get_json("/tweets/search/recent", params)
            meta = require(payload, "meta")
            raw_posts = payload.get("data", []) if isinstance(payload, dict) else []
            if not isinstance(raw_posts, list):
                raise ResponseShapeError("search/recent: data is not a list")
            posts.extend(_parse_post(raw) for raw in raw_posts)
            next_token = meta.get("next_token") if isinstance(meta, dict) else None
            if not next_token:
                break
        return posts

    async def poll(self) -> dict[str, Reading[list[Post]]]:
        """New posts per query key since the previous successful poll.

        A failed query keeps its cursor, so the next poll picks up what was missed.
        """
        results: dict[str, Reading[list[Post]]] = {}
        for key, query in self.queries.items():

            async def fetch(key: str = key, query: str = query) -> list[Post]:
                posts = await self.search_recent(query, self._newest_id.get(key))
                if posts:
                    self._newest_id[key] = max(p.post_id for p in posts)
                return posts

            results[key] = await read_into(self.book, key, fetch, self.http.redactor, self.http.log)
        return results


def _parse_post(raw: Any) -> Post:
    metrics = require(raw, "public_metrics")
    created = raw.get("created_at") if isinstance(raw, dict) else None
    created_at: float | None = None
    if isinstance(created, str):
        try:
            created_at = datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
        except ValueError:
            created_at = None

    def count(name: str) -> int:
        value = metrics.get(name, 0) if isinstance(metrics, dict) else 0
        return value if isinstance(value, int) and value >= 0 else 0

    try:
        post_id = int(require(raw, "id"))
    except ValueError:
        raise ResponseShapeError("post id is not an integer") from None
    return Post(
        post_id=post_id,
        text=str(require(raw, "text")),
        created_at=created_at,
        likes=count("like_count"),
        retweets=count("retweet_count"),
        replies=count("reply_count"),
        quotes=count("quote_count"),
    )
