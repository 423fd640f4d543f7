"""The console's ASGI app: the JSON API routers, the dashboard page and its local assets.

``create_app`` mounts ``ROUTERS`` (one per area); a new area (risk analytics, signal
webhooks ...) is one more ``APIRouter`` added there, guarded by ``require_token`` or by its own
authentication. Everything is behind the IP allowlist and sent with headers that keep the
dashboard out of frames and off other origins' scripts.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.console import api, webhooks
from agent.console.auth import IpAllowlist
from agent.console.context import ConsoleContext

log = logging.getLogger(__name__)

# webhooks.webhooks authenticates by its own HMAC signatures, not the bearer token.
ROUTERS: tuple[APIRouter, ...] = (api.monitor, api.controls, api.stream, webhooks.webhooks)
_PACKAGE = Path(str(resources.files("agent.console")))
STATIC_DIR = _PACKAGE / "static"
# Copied from console/node_modules by `make setup` (pinned in console/package.json).
VENDOR_CHART = STATIC_DIR / "vendor" / "uPlot.iife.min.js"

_SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
]


class GuardMiddleware:
    """Refuses clients outside the allowlist (403) and adds the security headers."""

    def __init__(self, app: ASGIApp, allowlist: IpAllowlist) -> None:
        self.app = app
        self.allowlist = allowlist

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        if not self.allowlist.allows(None if client is None else client[0]):
            await send(
                {
                    "type": "http.response.start",
                    "status": 403,
                    "headers": [(b"content-type", b"application/json"), *_SECURITY_HEADERS],
                }
            )
            await send({"type": "http.response.body", "body": b'{"detail":"address not allowed"}'})
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(context: ConsoleContext, allowlist: IpAllowlist) -> FastAPI:
    app = FastAPI(
        title="defi-agent console",
        version="1",
        # FastAPI's /docs and /redoc pages load their scripts from a CDN: the schema is enough.
        docs_url=None,
        redoc_url=None,
        description=(
            "The running agent's state and controls. Every /api route needs "
            "`Authorization: Bearer <token>`; controls are POST only. /webhooks/<name> "
            "takes signed trading signals instead (see the README: Signal webhooks)."
        ),
    )
    app.state.console = context
    for router in ROUTERS:
        app.include_router(router)
    templates = Jinja2Templates(directory=str(_PACKAGE / "templates"))
    chart = VENDOR_CHART.is_file()
    if not chart:
        log.warning(
            "console: %s is missing (run `make setup`): the dashboard shows no charts", VENDOR_CHART
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard(request: Request) -> Any:
        # The page holds no data: it reads the token from its URL fragment and calls the API.
        parts = context.parts
        return templates.TemplateResponse(
            request,
            "dashboard.html",
            {"chart": chart, "mode": parts.mode, "chain": parts.cfg.chain.name},
        )

    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.add_middleware(GuardMiddleware, allowlist=allowlist)
    return app
