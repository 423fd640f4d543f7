"""Telegram Bot API client and alert channel (commands: ``agent.alerts.telegram_commands``).

Formatting uses ``parse_mode=HTML``: every piece of text we did not write is passed through
``html.escape`` so ``<``, ``>`` and ``&`` arrive literally and nothing else needs escaping
(MarkdownV2 would need 18 characters escaped, differently inside code spans).

The bot token is part of every request path (``/bot<TOKEN>/method``). It never leaves this
module: log lines name the method only, errors are rebuilt from redacted text and raised outside
the ``except`` block (so aiohttp's exception, whose text holds the URL, is not chained), and
``repr`` shows no token.
"""

from __future__ import annotations

import asyncio
import html
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from pydantic import SecretStr

from agent.alerts.base import AlertCard, AlertEvent, Severity
from agent.errors import AlertDeliveryError, RateLimitedError, TemporaryError
from agent.redaction import Redactor
from agent.resilience import Clock, RetryPolicy, Sleep, TokenBucket

logger = logging.getLogger(__name__)

DEFAULT_TELEGRAM_BASE_URL = "https://api.telegram.org"
# Telegram's cap on a message's text, counted in UTF-16 code units after entity parsing.
TELEGRAM_MAX_MESSAGE_CHARS = 4096

_SEVERITY_ICON = {
    Severity.INFO: "🟢",
    Severity.WARNING: "🟠",
    Severity.ERROR: "🔴",
    Severity.CRITICAL: "🚨",
}


def escape_html(text: str) -> str:
    """Escape text for Telegram's HTML parse mode (``<``, ``>``, ``&``; quotes are allowed)."""
    return html.escape(text, quote=False)


def telegram_length(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji outside the BMP counts 2)."""
    return len(text.encode("utf-16-le")) // 2


@dataclass(frozen=True, slots=True)
class _Line:
    text: str
    bold_prefix: str = ""  # rendered as <b>prefix</b> before the text

    def to_html(self) -> str:
        if self.bold_prefix:
            return f"<b>{escape_html(self.bold_prefix)}</b>{escape_html(self.text)}"
        return escape_html(self.text)


def _cut_line(line: _Line, room: int) -> tuple[_Line | None, _Line]:
    """The longest head of ``line`` whose HTML fits ``room``, and the rest (bold-free)."""
    budget = room - telegram_length(_Line("", line.bold_prefix).to_html())
    used = 0
    cut_at = 0
    for char in line.text:
        cost = telegram_length(escape_html(char))
        if used + cost > budget:
            break
        used += cost
        cut_at += 1
    if cut_at == 0 or budget < 0:
        return None, line
    return _Line(line.text[:cut_at], line.bold_prefix), _Line(line.text[cut_at:])


def _pack_lines(lines: Iterable[_Line], limit: int) -> list[list[str]]:
    """Group lines (as HTML) into as few messages as possible, none longer than ``limit``.

    A line that fits in a message is never split (it moves to the next message when the
    current one is full); a line longer than a whole message is cut to fill each message.
    """
    messages: list[list[str]] = []
    current: list[str] = []
    used = 0

    def flush() -> None:
        nonlocal current, used
        if current:
            messages.append(current)
        current, used = [], 0

    for line in lines:
        rest = line
        while True:
            line_html = rest.to_html()
            separator = 1 if current else 0
            length = telegram_length(line_html)
            if used + separator + length <= limit:
                current.append(line_html)
                used += separator + length
                break
            if length <= limit:
                flush()
                continue
            head, tail = _cut_line(rest, limit - used - separator)
            if head is None:
                flush()
                continue
            current.append(head.to_html())
            flush()
            rest = tail
    flush()
    return messages


_TRUNCATED_MARK = "… (truncated)"


def _join_messages(messages: list[list[str]], limit: int, max_messages: int) -> list[str]:
    """Join each message's lines; past ``max_messages`` the rest is cut and marked."""
    if len(messages) > max_messages:
        last = messages[max_messages - 1]
        mark = escape_html(_TRUNCATED_MARK)
        while last and telegram_length("\n".join([*last, mark])) > limit:
            last.pop()
        messages = [*messages[: max_messages - 1], [*last, mark]]
    return ["\n".join(lines) for lines in messages]


def render_card_html(
    card: AlertCard, limit: int = TELEGRAM_MAX_MESSAGE_CHARS, max_messages: int = 3
) -> list[str]:
    """An alert as 1..``max_messages`` HTML messages, each at most ``limit`` characters."""
    icon = _SEVERITY_ICON.get(card.severity, "")
    lines = [_Line("", f"{icon} {card.title}".strip())]
    if card.summary:
        lines.extend(_Line(text) for text in card.summary.splitlines() or [""])
    lines.extend(_Line(value, f"{name}: ") for name, value in card.fields)
    return _join_messages(_pack_lines(lines, limit), limit, max_messages)


def render_plain_html(
    text: str, limit: int = TELEGRAM_MAX_MESSAGE_CHARS, max_messages: int = 3
) -> list[str]:
    """Plain text (a command reply) as escaped HTML messages of at most ``limit`` characters."""
    lines = (_Line(line) for line in text.splitlines() or [""])
    return _join_messages(_pack_lines(lines, limit), limit, max_messages)


def _secret_value(secret: str | SecretStr) -> str:
    return secret.get_secret_value() if isinstance(secret, SecretStr) else secret


class TelegramBotApi:
    """A thin Bot API client: JSON POSTs, retries on 429 (``retry_after``) and 5xx, rate limits.

    ``session`` is owned by the caller. ``base_url`` defaults to the real API; tests point it at
    a local fake. Rate limits for ``sendMessage``: ``per_chat_rate_per_s`` per chat and
    ``global_rate_per_s`` overall (Telegram: about 1/s per chat, 30/s in total).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        bot_token: str | SecretStr,
        *,
        base_url: str = DEFAULT_TELEGRAM_BASE_URL,
        max_attempts: int = 4,
        base_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        max_retry_after_s: float = 60.0,
        request_timeout_s: float = 15.0,
        per_chat_rate_per_s: float = 1.0,
        global_rate_per_s: float = 30.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        token = _secret_value(bot_token)
        if not token:
            raise ValueError("telegram bot token is empty")
        self._session = session
        self._token = token
        self._base_url = base_url.rstrip("/")
        self._redact = Redactor([token], mask="<redacted>")
        self._retry = RetryPolicy(max_attempts, base_backoff_s, max_backoff_s, max_retry_after_s)
        self._request_timeout_s = request_timeout_s
        self._per_chat_rate_per_s = per_chat_rate_per_s
        self._clock = clock
        self._sleep = sleep
        self._global_bucket = TokenBucket(
            global_rate_per_s, max(1.0, global_rate_per_s), clock=clock, sleep=sleep
        )
        self._chat_buckets: dict[int, TokenBucket] = {}

    def __repr__(self) -> str:
        return f"TelegramBotApi(base_url={self._base_url!r}, token=<redacted>)"

    def redact(self, text: str) -> str:
        """``text`` with the bot token masked."""
        return self._redact(text)

    async def call(
        self,
        method: str,
        payload: Mapping[str, Any],
        *,
        timeout_s: float | None = None,
        before_attempt: Callable[[], Awaitable[None]] | None = None,
    ) -> Any:
        """Call ``method`` and return its ``result``; retries 429 and 5xx, raises the rest.

        Raises ``AlertDeliveryError`` (4xx other than 429), ``RateLimitedError`` (429 after the
        retries) or ``TemporaryError`` (5xx, network, timeouts after the retries).
        """
        async for attempt in self._retry.retrying(self._sleep):
            with attempt:
                if before_attempt is not None:
                    await before_attempt()
                return await self._call_once(method, payload, timeout_s)
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def _call_once(
        self, method: str, payload: Mapping[str, Any], timeout_s: float | None
    ) -> Any:
        url = f"{self._base_url}/bot{self._token}/{method}"
        timeout = aiohttp.ClientTimeout(total=timeout_s or self._request_timeout_s)
        failure: str | None = None
        invalid_url: str | None = None
        status = 0
        body: Any = None
        try:
            async with self._session.post(url, json=dict(payload), timeout=timeout) as response:
                status = response.status
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
        except TimeoutError:
            failure = f"telegram {method}: timed out"
        except aiohttp.InvalidURL as exc:
            invalid_url = f"telegram {method}: invalid URL {self._redact(str(exc))}"
        except aiohttp.ClientError as exc:
            failure = f"telegram {method}: {type(exc).__name__}: {self._redact(str(exc))}"
        # Raised here, outside the except blocks, so aiohttp's exception (URL and token in its
        # text) is not attached as __context__ to what callers log.
        if invalid_url is not None:
            raise AlertDeliveryError(invalid_url)
        if failure is not None:
            logger.debug("%s", failure)
            raise TemporaryError(failure)
        return self._result_or_raise(method, status, body)

    def _result_or_raise(self, method: str, status: int, body: Any) -> Any:
        if isinstance(body, dict) and body.get("ok") is True and status < 400:
            return body.get("result")
        error_code = status
        description = f"HTTP {status}"
        retry_after_s: float | None = None
        if isinstance(body, dict):
            if isinstance(body.get("error_code"), int):
                error_code = body["error_code"]
            if isinstance(body.get("description"), str):
                description = self._redact(body["description"])[:300]
            parameters = body.get("parameters")
            if isinstance(parameters, dict) and isinstance(
                parameters.get("retry_after"), int | float
            ):
                retry_after_s = float(parameters["retry_after"])
        message = f"telegram {method}: {error_code} {description}"
        if status == 429 or error_code == 429:
            logger.warning("telegram %s rate limited, retry after %ss", method, retry_after_s)
            raise RateLimitedError(message, retry_after_s=retry_after_s)
        # 409: another getUpdates poller (e.g. the previous process during a restart).
        if status >= 500 or error_code >= 500 or status == 0 or error_code == 409:
            logger.warning("telegram %s failed: %s", method, message)
            raise TemporaryError(message)
        raise AlertDeliveryError(message)

    def _chat_bucket(self, chat_id: int) -> TokenBucket:
        bucket = self._chat_buckets.get(chat_id)
        if bucket is None:
            bucket = TokenBucket(self._per_chat_rate_per_s, 1, clock=self._clock, sleep=self._sleep)
            self._chat_buckets[chat_id] = bucket
        return bucket

    async def send_message(self, chat_id: int, text_html: str) -> None:
        """``sendMessage`` with ``parse_mode=HTML``; ``text_html`` must already be escaped."""
        chat_bucket = self._chat_bucket(chat_id)

        async def wait_for_slot() -> None:
            await chat_bucket.acquire()
            await self._global_bucket.acquire()

        try:
            await self.call(
                "sendMessage",
                {
                    "chat_id": chat_id,
                    "text": text_html,
                    "parse_mode": "HTML",
                    "link_preview_options": {"is_disabled": True},
                },
                before_attempt=wait_for_slot,
            )
        except RateLimitedError as exc:
            if exc.retry_after_s is not None:
                chat_bucket.pause_for(exc.retry_after_s)
            raise

    async def get_updates(self, offset: int | None, poll_timeout_s: int) -> list[dict[str, Any]]:
        """Long-poll ``getUpdates``; passing ``offset`` confirms every update before it."""
        payload: dict[str, Any] = {"timeout": poll_timeout_s, "allowed_updates": ["message"]}
        if offset is not None:
            payload["offset"] = offset
        result = await self.call(
            "getUpdates", payload, timeout_s=poll_timeout_s + self._request_timeout_s
        )
        if not isinstance(result, list):
            raise TemporaryError("telegram getUpdates: result is not a list")
        return [update for update in result if isinstance(update, dict)]


class TelegramNotifier:
    """Alert channel: every event goes to every configured chat as HTML.

    An event longer than one message is split; past ``max_messages_per_alert`` it is cut (one
    runaway revert reason must not hold the chat's 1 msg/s budget for minutes).
    """

    def __init__(
        self,
        api: TelegramBotApi,
        chat_ids: Sequence[int],
        *,
        name: str = "telegram",
        max_messages_per_alert: int = 3,
    ) -> None:
        if not chat_ids:
            raise ValueError("telegram notifier needs at least one chat id")
        self._api = api
        self._chat_ids = tuple(chat_ids)
        self._name = name
        self._max_messages_per_alert = max_messages_per_alert

    @property
    def name(self) -> str:
        return self._name

    async def send(self, event: AlertEvent) -> None:
        messages = render_card_html(event.render_card(), max_messages=self._max_messages_per_alert)
        for chat_id in self._chat_ids:
            for text_html in messages:
                await self._api.send_message(chat_id, text_html)

    async def aclose(self) -> None:
        """Nothing to release: the aiohttp session belongs to the caller."""
