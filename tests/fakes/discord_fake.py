"""A local fake of a Discord webhook: records JSON bodies, serves the documented shapes.

``POST /api/webhooks/<id>/<token>``: 204 (or 200 with a message object when ``?wait=true``),
scripted 429 (body ``{"message", "retry_after", "global"}`` plus ``Retry-After`` and
``X-RateLimit-*`` headers) and 500, and 400 ``Invalid Form Body`` (code 50035) for bodies that
break Discord's length limits.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

LIMITS = {"content": 2000, "title": 256, "description": 4096, "field_name": 256}
FIELD_VALUE_MAX = 1024
EMBED_FIELDS_MAX = 25
EMBED_TOTAL_MAX = 6000


@dataclass(frozen=True)
class RecordedPost:
    body: dict[str, Any]
    query: dict[str, str]
    status: int
    at: float  # time.monotonic()


@dataclass
class DiscordWebhookFake:
    """Run with ``async with DiscordWebhookFake() as fake:``; post to ``fake.webhook_url``."""

    webhook_id: str = "112233445566778899"
    webhook_token: str = "fake-webhook-token-Qx9vT3kLm2pR7sW1zY5a"
    requests: list[RecordedPost] = field(default_factory=list)
    _failures: deque[tuple[int, float]] = field(default_factory=deque)
    _message_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/webhooks/{self.webhook_id}/{self.webhook_token}"

    @property
    def delivered(self) -> list[dict[str, Any]]:
        """Bodies Discord accepted, in order."""
        return [r.body for r in self.requests if 200 <= r.status < 300]

    async def __aenter__(self) -> DiscordWebhookFake:
        app = web.Application()
        app.router.add_post("/api/webhooks/{webhook_id}/{webhook_token}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def fail_next(self, status: int, retry_after_s: float = 1.0) -> None:
        """The next post answers ``status`` (429 carries ``retry_after_s``, or 500)."""
        self._failures.append((status, retry_after_s))

    def _record(
        self, request: web.Request, body: dict[str, Any], response: web.Response
    ) -> web.Response:
        self.requests.append(
            RecordedPost(body, dict(request.query), response.status, time.monotonic())
        )
        return response

    async def _handle(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = {}
        if (
            request.match_info["webhook_id"] != self.webhook_id
            or request.match_info["webhook_token"] != self.webhook_token
        ):
            unknown = web.json_response({"message": "Unknown Webhook", "code": 10015}, status=404)
            return self._record(request, body, unknown)
        if self._failures:
            status, retry_after_s = self._failures.popleft()
            if status == 429:
                headers = {
                    "Retry-After": str(max(1, round(retry_after_s))),
                    "X-RateLimit-Limit": "5",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": f"{time.time() + retry_after_s:.3f}",
                    "X-RateLimit-Reset-After": f"{retry_after_s:.3f}",
                    "X-RateLimit-Bucket": "abcd1234",
                    "X-RateLimit-Scope": "user",
                }
                limited = web.json_response(
                    {
                        "message": "You are being rate limited.",
                        "retry_after": retry_after_s,
                        "global": False,
                    },
                    status=429,
                    headers=headers,
                )
                return self._record(request, body, limited)
            failed = web.json_response({"message": "Internal Server Error", "code": 0}, status=500)
            return self._record(request, body, failed)
        errors = _limit_errors(body)
        if errors:
            invalid = web.json_response(
                {"code": 50035, "errors": errors, "message": "Invalid Form Body"}, status=400
            )
            return self._record(request, body, invalid)
        ok_headers = {
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "4",
            "X-RateLimit-Reset-After": "2.000",
            "X-RateLimit-Bucket": "abcd1234",
        }
        if request.query.get("wait") == "true":
            message = {
                "id": str(next(self._message_ids)),
                "type": 0,
                "channel_id": "998877665544332211",
                "webhook_id": self.webhook_id,
                "content": body.get("content", ""),
                "embeds": body.get("embeds", []),
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
            }
            return self._record(
                request, body, web.json_response(message, status=200, headers=ok_headers)
            )
        return self._record(request, body, web.Response(status=204, headers=ok_headers))


def _limit_errors(body: dict[str, Any]) -> dict[str, str]:
    errors: dict[str, str] = {}
    content = body.get("content")
    embeds = body.get("embeds") or []
    if not content and not embeds:
        errors["content"] = "Cannot send an empty message"
    if isinstance(content, str) and len(content) > LIMITS["content"]:
        errors["content"] = "Must be 2000 or fewer in length."
    total = 0
    for index, embed in enumerate(embeds):
        for key in ("title", "description"):
            text = embed.get(key) or ""
            total += len(text)
            if len(text) > LIMITS[key]:
                errors[f"embeds.{index}.{key}"] = f"Must be {LIMITS[key]} or fewer in length."
        fields = embed.get("fields") or []
        if len(fields) > EMBED_FIELDS_MAX:
            errors[f"embeds.{index}.fields"] = "Must be 25 or fewer in length."
        for field_index, embed_field in enumerate(fields):
            name, value = embed_field.get("name", ""), embed_field.get("value", "")
            total += len(name) + len(value)
            if not name or not value:
                errors[f"embeds.{index}.fields.{field_index}"] = "This field is required"
            if len(name) > LIMITS["field_name"] or len(value) > FIELD_VALUE_MAX:
                errors[f"embeds.{index}.fields.{field_index}"] = "Too long"
        total += len((embed.get("footer") or {}).get("text", ""))
    if total > EMBED_TOTAL_MAX:
        errors["embeds"] = "Embed size exceeds maximum size of 6000"
    return errors
