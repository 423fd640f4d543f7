"""Per-token crowd sentiment: X posts scored with VADER plus a crypto lexicon, weighted by
engagement, blended with CoinGecko's community votes.

* Each post gets VADER's compound score in [-1, 1] (lexicon extended with crypto slang).
* Weight = 1 + ln(1 + likes + retweets + replies + quotes): a viral post counts more, but a
  thousand likes do not drown a hundred quiet posts.
* Token score from X = weighted mean of the scores of the token's posts inside ``window_s``.
* Post volume = new posts attributed to the token this cycle; its z-score is taken against the
  previous ``baseline_len`` cycles' volumes (0 until two samples exist or when flat).
* CoinGecko ``sentiment_votes_up_percentage`` p (0..100) maps to ``p / 50 - 1`` in [-1, 1] and is
  blended in with ``coingecko_weight``; when only one side has data, that side is the score.
* A failed X query (or a failed CoinGecko read) leaves the token's last score, marked stale.

Scores are floats for ranking and gating only.
"""

from __future__ import annotations

import logging
import math
import re
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from agent.feeds.coingecko import CoinGeckoClient
from agent.feeds.http import ReadingBook
from agent.feeds.x import Post, XClient
from agent.types import Reading

# Valence on VADER's -4..+4 scale.
CRYPTO_LEXICON: dict[str, float] = {
    "moon": 2.5,
    "mooning": 2.8,
    "bullish": 2.6,
    "bull": 1.5,
    "pump": 1.5,
    "pumping": 1.8,
    "hodl": 1.2,
    "ath": 2.0,
    "breakout": 1.8,
    "wagmi": 2.0,
    "lfg": 2.0,
    "undervalued": 1.6,
    "accumulate": 1.2,
    "rug": -3.0,
    "rugged": -3.2,
    "rugpull": -3.4,
    "rekt": -2.8,
    "bearish": -2.6,
    "bear": -1.5,
    "dump": -2.0,
    "dumping": -2.3,
    "fud": -1.8,
    "scam": -3.0,
    "hack": -2.8,
    "hacked": -3.0,
    "exploit": -2.8,
    "exploited": -3.0,
    "ngmi": -2.0,
    "capitulation": -2.5,
    "liquidated": -2.5,
    "depeg": -2.8,
    "overvalued": -1.6,
}


class PostScorer:
    """VADER with the crypto lexicon; ``score(text)`` is the compound score in [-1, 1]."""

    def __init__(self, extra_lexicon: Mapping[str, float] | None = None) -> None:
        self._analyzer = SentimentIntensityAnalyzer()
        self._analyzer.lexicon.update(CRYPTO_LEXICON)
        if extra_lexicon:
            self._analyzer.lexicon.update({k.lower(): v for k, v in extra_lexicon.items()})

    def score(self, text: str) -> float:
        compound = self._analyzer.polarity_scores(text)["compound"]
        return max(-1.0, min(1.0, float(compound)))


def engagement_weight(post: Post) -> float:
    """1 + ln(1 + likes + retweets + replies + quotes)."""
    return 1.0 + math.log1p(post.likes + post.retweets + post.replies + post.quotes)


def coingecko_to_score(up_pct: float) -> float:
    """Share of up-votes (0..100) -> [-1, 1]; 50 % is neutral."""
    return max(-1.0, min(1.0, up_pct / 50.0 - 1.0))


@dataclass(frozen=True, slots=True)
class TokenSentiment:
    """Sentiment of one token. ``score`` in [-1, 1] is the blended value strategies read."""

    token: str
    score: float
    x_score: float | None
    coingecko_score: float | None
    post_volume: int
    volume_z: float
    posts_in_window: int


@dataclass(frozen=True, slots=True)
class _ScoredPost:
    post_id: int
    at: float
    score: float
    weight: float


class SentimentAggregator:
    """Pure aggregation (no I/O): posts in, :class:`TokenSentiment` out."""

    def __init__(
        self,
        tokens: Iterable[str],
        *,
        window_s: float = 3600.0,
        baseline_len: int = 24,
        coingecko_weight: float = 0.3,
        keywords: Mapping[str, Sequence[str]] | None = None,
        scorer: PostScorer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0.0 <= coingecko_weight <= 1.0:
            raise ValueError("coingecko_weight must be within [0, 1]")
        self.tokens = list(tokens)
        self.window_s = window_s
        self.coingecko_weight = coingecko_weight
        self.scorer = scorer if scorer is not None else PostScorer()
        self._clock = clock
        self._posts: dict[str, dict[int, _ScoredPost]] = {t: {} for t in self.tokens}
        self._new_counts: dict[str, int] = dict.fromkeys(self.tokens, 0)
        self._baseline: dict[str, deque[int]] = {
            t: deque(maxlen=max(2, baseline_len)) for t in self.tokens
        }
        self._keyword_res: dict[str, re.Pattern[str]] = {}
        for token in self.tokens:
            words = list((keywords or {}).get(token, ())) or _default_keywords(token)
            alternatives = "|".join(re.escape(w) for w in words)
            self._keyword_res[token] = re.compile(
                rf"(?<![\w$])(?:{alternatives})(?!\w)", re.IGNORECASE
            )

    def tokens_mentioned(self, text: str) -> list[str]:
        """Configured tokens whose keywords (cashtag, symbol, name) appear in ``text``."""
        return [t for t, pattern in self._keyword_res.items() if pattern.search(text)]

    def add_posts(self, token: str, posts: Iterable[Post]) -> int:
        """Score and keep ``posts`` for ``token``; returns how many were new."""
        kept = self._posts.setdefault(token, {})
        new = 0
        now = self._clock()
        for post in posts:
            if post.post_id in kept:
                continue
            kept[post.post_id] = _ScoredPost(
                post_id=post.post_id,
                at=post.created_at if post.created_at is not None else now,
                score=self.scorer.score(post.text),
                weight=engagement_weight(post),
            )
            new += 1
        self._new_counts[token] = self._new_counts.get(token, 0) + new
        return new

    def add_account_posts(self, posts: Iterable[Post]) -> None:
        """Posts from watched accounts, attributed to every token they mention."""
        for post in posts:
            for token in self.tokens_mentioned(post.text):
                self.add_posts(token, [post])

    def compute(self, token: str, coingecko_up_pct: float | None = None) -> TokenSentiment:
        """Close the cycle for ``token``: score over the window, volume z-score, blend."""
        now = self._clock()
        kept = self._posts.setdefault(token, {})
        for post_id in [p.post_id for p in kept.values() if now - p.at > self.window_s]:
            del kept[post_id]
        total_weight = sum(p.weight for p in kept.values())
        x_score = sum(p.score * p.weight for p in kept.values()) / total_weight if kept else None
        volume = self._new_counts.get(token, 0)
        self._new_counts[token] = 0
        baseline = self._baseline.setdefault(token, deque(maxlen=24))
        volume_z = 0.0
        if len(baseline) >= 2:
            stdev = statistics.pstdev(baseline)
            if stdev > 0:
                volume_z = (volume - statistics.fmean(baseline)) / stdev
        baseline.append(volume)
        cg_score = coingecko_to_score(coingecko_up_pct) if coingecko_up_pct is not None else None
        if x_score is not None and cg_score is not None:
            score = (1 - self.coingecko_weight) * x_score + self.coingecko_weight * cg_score
        elif x_score is not None:
            score = x_score
        elif cg_score is not None:
            score = cg_score
        else:
            score = 0.0
        return TokenSentiment(
            token=token,
            score=max(-1.0, min(1.0, score)),
            x_score=x_score,
            coingecko_score=cg_score,
            post_volume=volume,
            volume_z=volume_z,
            posts_in_window=len(kept),
        )


_NAMES = {"WETH": ("eth", "ethereum"), "WBTC": ("btc", "bitcoin")}


def _default_keywords(token: str) -> list[str]:
    base = token[1:] if token in _NAMES else token
    words = [f"${base}", token]
    words.extend(_NAMES.get(token, ()))
    return words


class SentimentSource(Protocol):
    """What the engine uses of a sentiment feed (:class:`SentimentFeed` or the simulator)."""

    source: str

    async def poll(self) -> dict[str, Reading[TokenSentiment]]: ...

    def reading(self, token: str) -> Reading[TokenSentiment] | None: ...


class SentimentFeed:
    """Polls X (and optionally CoinGecko) and keeps a :class:`TokenSentiment` reading per token.

    ``poll_coingecko=False`` when the engine already polls the CoinGecko client on its own
    cadence; the feed then reads the client's latest readings.
    """

    source = "sentiment"

    def __init__(
        self,
        aggregator: SentimentAggregator,
        *,
        x: XClient | None = None,
        coingecko: CoinGeckoClient | None = None,
        poll_coingecko: bool = True,
        max_age_s: float = 900.0,
        logger: logging.Logger | None = None,
    ) -> None:
        self.aggregator = aggregator
        self.x = x
        self.coingecko = coingecko
        self.poll_coingecko = poll_coingecko
        self.book: ReadingBook[str, TokenSentiment] = ReadingBook(self.source, max_age_s)
        self.log = logger if logger is not None else logging.getLogger("agent.feeds.sentiment")

    async def poll(self) -> dict[str, Reading[TokenSentiment]]:
        """One cycle; never raises (failures become stale readings)."""
        errors: dict[str, str] = {}
        if self.x is not None:
            x_readings = await self.x.poll()
            tokens = set(self.aggregator.tokens)
            for key, reading in x_readings.items():
                if key in tokens:
                    if reading.error is not None:
                        errors[key] = f"x: {reading.error}"
                    elif reading.value is not None:
                        self.aggregator.add_posts(key, reading.value)
                    continue
                # Accounts and packed multi-token queries: attribute posts by keyword.
                if reading.error is not None:
                    for token in self.aggregator.tokens:
                        errors.setdefault(token, f"x {key}: {reading.error}")
                elif reading.value is not None:
                    self.aggregator.add_account_posts(reading.value)
        if self.coingecko is not None and self.poll_coingecko:
            await self.coingecko.poll_coins()
        results: dict[str, Reading[TokenSentiment]] = {}
        for token in self.aggregator.tokens:
            up_pct: float | None = None
            if self.coingecko is not None and token in self.coingecko.coin_ids:
                cg = self.coingecko.sentiment_up_pct(token)
                if cg is None or cg.error is not None:
                    detail = cg.error if cg is not None else "no reading yet"
                    errors.setdefault(token, f"coingecko: {detail}")
                else:
                    up_pct = cg.value
            if token in errors:
                # Keep the last score. Posts already added stay counted toward the next
                # cycle (X's since_id cursor also holds), so the baseline sees no false zero.
                results[token] = self.book.fail(token, errors[token])
                self.log.warning("sentiment[%s]: stale: %s", token, errors[token])
            else:
                results[token] = self.book.ok(token, self.aggregator.compute(token, up_pct))
        return results

    def reading(self, token: str) -> Reading[TokenSentiment] | None:
        return self.book.get(token)
