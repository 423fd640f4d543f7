"""``ConsoleServer``: the console app on uvicorn, inside the agent's own event loop.

``listen()`` binds the socket at start-up (a busy port is a ``ConfigError`` before any
connection is made), ``attach()`` hands it the built agent, and ``serve`` is an engine
background job: it serves until the engine stops and cancels it, then closes the streams.
Uvicorn's own signal handling and logging set-up are switched off: the agent owns both.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Iterator

import uvicorn

from agent.alerts.control import ControlSurface
from agent.config.models import ConsoleConfig
from agent.console.app import create_app
from agent.console.auth import ConsoleAuth, IpAllowlist, load_or_create_token
from agent.console.context import AgentView, ConsoleContext
from agent.console.live import LiveFeed
from agent.console.webhook_auth import SignalSink, WebhookReceiver
from agent.errors import ConfigError
from agent.events import EventBus

log = logging.getLogger(__name__)


class _AgentOwnedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # SIGINT/SIGTERM belong to the agent's run loop, which stops this server itself.
        yield


class ConsoleServer:
    """The operator console of one agent. ``name = "console"`` labels its background job."""

    name = "console"

    def __init__(self, cfg: ConsoleConfig, events: EventBus) -> None:
        self.cfg = cfg
        self._token = load_or_create_token(cfg.token, cfg.token_file)
        self.auth = ConsoleAuth(self._token)
        self.allowlist = IpAllowlist(cfg.allowed_ips)
        self.live = LiveFeed()
        self.live.subscribe(events)
        self._socket: socket.socket | None = None
        self._context: ConsoleContext | None = None
        self.port: int | None = None

    def __repr__(self) -> str:
        return f"ConsoleServer({self.cfg.host}:{self.port})"

    @property
    def url(self) -> str:
        """The dashboard's address, without the token."""
        host = self.cfg.host if ":" not in self.cfg.host else f"[{self.cfg.host}]"
        return f"http://{host}:{self.port}/"

    def dashboard_url(self) -> str:
        """The dashboard's address with the token in the fragment (never sent to a server):
        a secret, for the operator's terminal only, never for a log."""
        return f"{self.url}#token={self._token.get_secret_value()}"

    def listen(self) -> None:
        """Bind ``host:port`` now (``port = 0``: a free port, readable from ``.port``)."""
        host, port = self.cfg.host, self.cfg.port
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.create_server((host, port), family=family)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"console.port: {host}:{port} is already in use (another agent running?); "
                    "choose another port or set console.enabled = false"
                ) from None
            raise ConfigError(
                f"console.host/console.port: cannot listen on {host}:{port}: "
                f"{exc.strerror or type(exc).__name__}"
            ) from None
        self._socket = sock
        self.port = int(sock.getsockname()[1])
        where = "console.token" if self.cfg.token is not None else str(self.cfg.token_file)
        log.info("console on %s (its token: %s)", self.url, where)

    def attach(
        self, parts: AgentView, control: ControlSurface, signals: SignalSink | None = None
    ) -> None:
        """Serve ``parts``; ``signals`` takes the ``[webhooks.*]`` signals (the signal
        strategy's ``enqueue``), None when that strategy is not running."""
        receiver = WebhookReceiver(parts.cfg.webhooks) if parts.cfg.webhooks else None
        self._context = ConsoleContext(
            parts=parts,
            control=control,
            auth=self.auth,
            live=self.live,
            webhooks=receiver,
            signals=signals,
        )

        def prices_at(block: int) -> dict[str, float] | None:
            snapshot = parts.engine.last_snapshot
            if snapshot is None or snapshot.block != block:
                return None
            return {
                token.symbol: price
                for address, price in snapshot.prices_usd.items()
                if (token := parts.tokens.get(address)) is not None
            }

        self.live.prices_at_tick = prices_at

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def run(self) -> None:
        """Serve until cancelled (the engine's background job)."""
        if self._socket is None or self._context is None:
            raise RuntimeError("console server: listen() and attach() first")
        config = uvicorn.Config(
            create_app(self._context, self.allowlist),
            log_config=None,
            access_log=False,  # query strings hold event-stream tickets
            lifespan="off",
            timeout_graceful_shutdown=2,
            server_header=False,
        )
        # Uvicorn's start/stop chatter at INFO repeats our own "console on" line; keep its
        # warnings and errors.
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        server = _AgentOwnedServer(config)
        serving = asyncio.ensure_future(server.serve(sockets=[self._socket]))
        try:
            await asyncio.shield(serving)
        finally:
            # Stopping (or cancelled by the engine): close the open event streams, then wait.
            server.should_exit = True
            server.force_exit = True
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(serving, 5.0)
