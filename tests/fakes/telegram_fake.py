"""A local fake of the Telegram Bot API: a spy that serves the documented response shapes.

Routes ``POST /bot<token>/<method>`` for ``sendMessage`` and ``getUpdates``. It records every
request (with a monotonic timestamp), keeps scripted failures per method (429 with
``parameters.retry_after``, 500), serves scripted updates in the real ``Update`` shape with
offset confirmation and long polling, and checks HTML the way Telegram does (only its tags,
only valid entities) so a test can read the text the user would see.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

_ALLOWED_TAGS = "b|strong|i|em|u|ins|s|strike|del|a|code|pre|span|tg-spoiler|tg-emoji|blockquote"
_TAG = re.compile(rf"</?(?:{_ALLOWED_TAGS})(?:\s[^<>]*)?>")
_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")


class HtmlParseError(ValueError):
    pass


def visible_text(text_html: str) -> str:
    """The text a Telegram user sees for an HTML message; raises on what Telegram rejects."""
    out: list[str] = []
    i = 0
    while i < len(text_html):
        char = text_html[i]
        if char == "<":
            match = _TAG.match(text_html, i)
            if match is None:
                raise HtmlParseError(f"Unsupported start tag at byte offset {i}")
            i = match.end()
            continue
        if char == "&":
            match = _ENTITY.match(text_html, i)
            if match is None:
                raise HtmlParseError(f"Unsupported HTML entity at byte offset {i}")
            out.append(html.unescape(match.group(0)))
            i = match.end()
            continue
        if char == ">":
            raise HtmlParseError(f"Unexpected end tag at byte offset {i}")
        out.append(char)
        i += 1
    return "".join(out)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    payload: dict[str, Any]
    status: int
    at: float  # time.monotonic()


@dataclass(frozen=True)
class SentMessage:
    chat_id: int
    text: str
    parse_mode: str | None
    visible_text: str
    at: float


@dataclass
class TelegramFake:
    """Run with ``async with TelegramFake(token) as fake:``; point clients at ``fake.base_url``."""

    token: str
    bot_username: str = "defi_agent_test_bot"
    requests: list[RecordedRequest] = field(default_factory=list)
    sent_messages: list[SentMessage] = field(default_factory=list)
    _failures: dict[str, deque[int]] = field(default_factory=dict)
    _updates: list[dict[str, Any]] = field(default_factory=list)
    _confirmed_below: int = 0
    _new_update: asyncio.Event = field(default_factory=asyncio.Event)
    _update_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))
    _message_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> TelegramFake:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # --- scripting -------------------------------------------------------------------------

    def fail_next(self, method: str, *statuses: int) -> None:
        """The next calls of ``method`` answer with these statuses (429 or 500), in order."""
        self._failures.setdefault(method, deque()).extend(statuses)

    def push_command(
        self,
        chat_id: int,
        text: str,
        *,
        date: int | None = None,
        user_id: int | None = None,
        chat_type: str | None = None,
        sender: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        update_kind: str = "message",
    ) -> int:
        """Queue a text message from ``chat_id`` as an Update; returns its update_id.

        By default a private chat with the user whose id is ``chat_id``. ``user_id`` sends it
        from that user (in a group when ``chat_id`` is negative); ``sender`` replaces the
        ``from`` object (None with ``update_kind="channel_post"`` leaves it out); ``extra``
        adds fields as Telegram sets them (``sender_chat``, ``forward_origin``, ...).
        """
        update_id = next(self._update_ids)
        command_length = len(text.split(" ", 1)[0]) if text.startswith("/") else 0
        user = chat_id if user_id is None else user_id
        if chat_type is None:
            chat_type = "private" if chat_id > 0 else "supergroup"
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat["first_name"] = "Op"
        else:
            chat["title"] = "Operators"
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "chat": chat,
            "date": int(time.time()) if date is None else date,
            "text": text,
        }
        if update_kind != "channel_post":
            message["from"] = sender or {
                "id": user,
                "is_bot": False,
                "first_name": "Op",
                "language_code": "en",
            }
        message.update(extra or {})
        if command_length:
            message["entities"] = [{"offset": 0, "length": command_length, "type": "bot_command"}]
        self._updates.append({"update_id": update_id, update_kind: message})
        self._new_update.set()
        return update_id

    def messages_to(self, chat_id: int) -> list[SentMessage]:
        return [m for m in self.sent_messages if m.chat_id == chat_id]

    def texts_to(self, chat_id: int, containing: str = "") -> list[str]:
        """The visible texts sent to ``chat_id`` that contain ``containing``, oldest first."""
        return [m.visible_text for m in self.messages_to(chat_id) if containing in m.visible_text]

    # --- server ----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        try:
            payload = await request.json() if request.can_read_body else {}
        except ValueError:
            payload = dict(await request.post())
        if request.match_info["token"] != self.token:
            return self._reply(method, payload, 401, _error(401, "Unauthorized"))
        scripted = self._failures.get(method)
        if scripted:
            status = scripted.popleft()
            if status == 429:
                body = _error(429, "Too Many Requests: retry after 1")
                body["parameters"] = {"retry_after": 1}
                return self._reply(method, payload, 429, body)
            return self._reply(method, payload, status, _error(status, "Internal Server Error"))
        if method == "sendMessage":
            return self._send_message(payload)
        if method == "getUpdates":
            return await self._get_updates(payload)
        return self._reply(method, payload, 404, _error(404, "Not Found"))

    def _reply(
        self, method: str, payload: dict[str, Any], status: int, body: dict[str, Any]
    ) -> web.Response:
        self.requests.append(RecordedRequest(method, payload, status, time.monotonic()))
        return web.json_response(body, status=status)

    def _send_message(self, payload: dict[str, Any]) -> web.Response:
        chat_id = payload.get("chat_id")
        text = payload.get("text")
        parse_mode = payload.get("parse_mode")
        if not isinstance(chat_id, int) or not isinstance(text, str) or not text:
            return self._reply("sendMessage", payload, 400, _error(400, "Bad Request: text empty"))
        shown = text
        if parse_mode == "HTML":
            try:
                shown = visible_text(text)
            except HtmlParseError as exc:
                body = _error(400, f"Bad Request: can't parse entities: {exc}")
                return self._reply("sendMessage", payload, 400, body)
        if len(shown.encode("utf-16-le")) // 2 > 4096:
            body = _error(400, "Bad Request: message is too long")
            return self._reply("sendMessage", payload, 400, body)
        now = time.monotonic()
        self.sent_messages.append(SentMessage(chat_id, text, parse_mode, shown, now))
        result = {
            "message_id": next(self._message_ids),
            "from": {"id": 1, "is_bot": True, "first_name": "bot", "username": self.bot_username},
            "chat": {"id": chat_id, "type": "private"},
            "date": int(time.time()),
            "text": shown,
        }
        return self._reply("sendMessage", payload, 200, {"ok": True, "result": result})

    async def _get_updates(self, payload: dict[str, Any]) -> web.Response:
        offset = payload.get("offset")
        if isinstance(offset, int) and offset > self._confirmed_below:
            # Telegram forgets every update below the offset once it is asked for it.
            self._confirmed_below = offset
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        timeout_s = float(payload.get("timeout", 0) or 0)
        limit = int(payload.get("limit", 100) or 100)
        if not self._updates and timeout_s > 0:
            self._new_update.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_update.wait(), timeout=timeout_s)
        result = self._updates[:limit]
        return self._reply("getUpdates", payload, 200, {"ok": True, "result": result})


def _error(code: int, description: str) -> dict[str, Any]:
    return {"ok": False, "error_code": code, "description": description}
