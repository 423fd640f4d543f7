"""Discord webhook channel: one embed per event, 429 and 5xx retries.

The webhook URL is a credential (anyone holding it can post). It appears only in the request
this module makes: logs name the channel, errors are rebuilt from redacted text outside the
``except`` block, and ``repr`` shows nothing of it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
from multidict import CIMultiDict
from pydantic import SecretStr
from yarl import URL

from agent.alerts.base import AlertCard, AlertEvent, Severity
from agent.errors import AlertDeliveryError, RateLimitedError, TemporaryError
from agent.redaction import Redactor
from agent.resilience import Clock, RetryPolicy, Sleep, parse_retry_after

logger = logging.getLogger(__name__)

# Discord's documented limits for webhook messages and embeds (characters).
CONTENT_MAX_CHARS = 2000
EMBED_TITLE_MAX_CHARS = 256
EMBED_DESCRIPTION_MAX_CHARS = 4096
EMBED_MAX_FIELDS = 25
EMBED_FIELD_NAME_MAX_CHARS = 256
EMBED_FIELD_VALUE_MAX_CHARS = 1024
EMBED_FOOTER_MAX_CHARS = 2048
EMBED_TOTAL_MAX_CHARS = 6000

SEVERITY_COLOR = {
    Severity.INFO: 0x2ECC71,  # green
    Severity.WARNING: 0xF1C40F,  # yellow
    Severity.ERROR: 0xE67E22,  # orange
    Severity.CRITICAL: 0xE74C3C,  # red
}


def truncate(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` characters, ending in an ellipsis when cut."""
    if len(text) <= max_chars:
        return text
    return text[: max_chars - 1] + "…"


def build_embed(card: AlertCard) -> dict[str, Any]:
    """An embed within Discord's per-field and 6000-character total limits."""
    title = truncate(card.title, EMBED_TITLE_MAX_CHARS)
    footer = truncate(f"defi-agent · {card.kind} · {card.severity.label}", EMBED_FOOTER_MAX_CHARS)
    fields: list[dict[str, str | bool]] = []
    used = len(title) + len(footer)
    for name, value in card.fields[:EMBED_MAX_FIELDS]:
        field_name = truncate(name, EMBED_FIELD_NAME_MAX_CHARS) or "-"
        field_value = truncate(value, EMBED_FIELD_VALUE_MAX_CHARS) or "-"
        used += len(field_name) + len(field_value)
        fields.append({"name": field_name, "value": field_value, "inline": True})
    # Over the total budget: drop trailing fields, then the description gets what is left.
    while fields and used > EMBED_TOTAL_MAX_CHARS:
        dropped = fields.pop()
        used -= len(str(dropped["name"])) + len(str(dropped["value"]))
    description_budget = min(EMBED_DESCRIPTION_MAX_CHARS, EMBED_TOTAL_MAX_CHARS - used)
    embed: dict[str, Any] = {
        "title": title,
        "color": SEVERITY_COLOR.get(card.severity, 0x95A5A6),
        "timestamp": card.timestamp_iso,
        "footer": {"text": footer},
        "fields": fields,
    }
    if card.summary and description_budget > 0:
        embed["description"] = truncate(card.summary, description_budget)
    return embed


def _retry_after_s(body: Any, headers: Mapping[str, str]) -> float | None:
    """Seconds to wait after a 429: the body's ``retry_after``, else the rate-limit headers."""
    if isinstance(body, dict) and isinstance(body.get("retry_after"), int | float):
        return float(body["retry_after"])
    for header in ("X-RateLimit-Reset-After", "Retry-After"):
        seconds = parse_retry_after(headers.get(header))
        if seconds is not None:
            return seconds
    return None


class DiscordWebhookNotifier:
    """Posts each event as an embed to one webhook. ``session`` is owned by the caller."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        webhook_url: str | SecretStr,
        *,
        name: str = "discord",
        username: str = "defi-agent",
        max_attempts: int = 4,
        base_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        max_retry_after_s: float = 60.0,
        request_timeout_s: float = 15.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        url = webhook_url.get_secret_value() if isinstance(webhook_url, SecretStr) else webhook_url
        if not url:
            raise ValueError("discord webhook url is empty")
        self._session = session
        self._webhook_url = url
        self._name = name
        self._username = username
        self._retry = RetryPolicy(max_attempts, base_backoff_s, max_backoff_s, max_retry_after_s)
        self._request_timeout_s = request_timeout_s
        self._clock = clock
        self._sleep = sleep
        # Set from X-RateLimit-Remaining: 0 so the next post waits for the bucket to reset.
        self._not_before = 0.0
        path_parts = [part for part in url.split("?", 1)[0].split("/") if part]
        self._redact = Redactor(
            [url, *path_parts[-2:], "/".join(path_parts[-2:])], mask="<redacted>"
        )

    def __repr__(self) -> str:
        return f"DiscordWebhookNotifier(name={self._name!r}, webhook=<redacted>)"

    @property
    def name(self) -> str:
        return self._name

    async def send(self, event: AlertEvent) -> None:
        await self.post({"embeds": [build_embed(event.render_card())]})

    async def send_text(self, text: str) -> None:
        """A plain message; cut to Discord's 2000-character content limit."""
        await self.post({"content": truncate(text, CONTENT_MAX_CHARS) or "-"})

    async def aclose(self) -> None:
        """Nothing to release: the aiohttp session belongs to the caller."""

    async def post(self, message: Mapping[str, Any]) -> None:
        """Execute the webhook with ``message`` (content and/or embeds); mentions are disabled."""
        payload = {"username": self._username, "allowed_mentions": {"parse": []}, **message}
        async for attempt in self._retry.retrying(self._sleep):
            with attempt:
                delay_s = self._not_before - self._clock()
                if delay_s > 0:
                    await self._sleep(delay_s)
                await self._post_once(payload)

    async def _post_once(self, payload: Mapping[str, Any]) -> None:
        failure: str | None = None
        invalid_url: str | None = None
        status = 0
        body: Any = None
        headers: Mapping[str, str] = CIMultiDict()
        try:
            url = URL(self._webhook_url).update_query(wait="true")
            timeout = aiohttp.ClientTimeout(total=self._request_timeout_s)
            async with self._session.post(url, json=payload, timeout=timeout) as response:
                status = response.status
                headers = CIMultiDict(response.headers)
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
        except TimeoutError:
            failure = "discord webhook: timed out"
        except aiohttp.ClientError as exc:
            failure = f"discord webhook: {type(exc).__name__}: {self._redact(str(exc))}"
            if isinstance(exc, aiohttp.InvalidURL):
                invalid_url = failure
        except ValueError as exc:  # yarl refuses to parse the configured URL
            invalid_url = f"discord webhook: invalid URL: {self._redact(str(exc))}"
        # Raised outside the except blocks so the aiohttp error (URL in its text) is not chained.
        if invalid_url is not None:
            raise AlertDeliveryError(invalid_url)
        if failure is not None:
            logger.debug("%s", failure)
            raise TemporaryError(failure)
        self._note_rate_limit_headers(headers)
        if 200 <= status < 300:
            return
        if status == 429:
            retry_after_s = _retry_after_s(body, headers)
            scope = headers.get("X-RateLimit-Scope", "global" if _is_global(body) else "route")
            logger.warning("discord rate limited (%s), retry after %ss", scope, retry_after_s)
            raise RateLimitedError(f"discord webhook: 429 ({scope})", retry_after_s=retry_after_s)
        detail = ""
        if isinstance(body, dict):
            detail = self._redact(f"{body.get('code', '')} {body.get('message', '')}".strip())
        message = f"discord webhook: HTTP {status} {detail[:300]}".rstrip()
        if status >= 500:
            logger.warning("%s", message)
            raise TemporaryError(message)
        raise AlertDeliveryError(message)

    def _note_rate_limit_headers(self, headers: Mapping[str, str]) -> None:
        if headers.get("X-RateLimit-Remaining") != "0":
            return
        try:
            reset_after_s = float(headers.get("X-RateLimit-Reset-After", "0"))
        except ValueError:
            return
        self._not_before = max(self._not_before, self._clock() + reset_after_s)


def _is_global(body: Any) -> bool:
    return isinstance(body, dict) and body.get("global") is True
