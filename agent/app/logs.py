"""Logging set up once, at command start (``defi-agent run``, ``dry-run``, ``demo``), from
``[logging]``: level, plain text or JSON lines on stderr, and an optional rotating file.

Every line passes through a redactor before it is written: the configured secrets (API keys,
bot token, webhook URL, keystore password) and the RPC URLs (providers put keys in their path)
never reach a log, not even inside a traceback.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, SecretStr

from agent.config.models import AgentConfig, LoggingConfig
from agent.errors import ConfigError
from agent.redaction import Redactor, redact_url

Redact = Callable[[str], str]

# Libraries whose INFO lines are noise next to ours.
_QUIET_LIBRARIES = ("aiohttp.access", "web3", "urllib3", "asyncio", "ccxt", "httpx")
_HANDLER_MARK = "_defi_agent_handler"


def _walk(node: Any, secrets: list[str], urls: list[str]) -> None:
    if isinstance(node, SecretStr):
        secrets.append(node.get_secret_value())
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            _walk(getattr(node, name), secrets, urls)
    elif isinstance(node, dict):
        for value in node.values():
            _walk(value, secrets, urls)
    elif isinstance(node, (list, tuple, set, frozenset)):
        for value in node:
            _walk(value, secrets, urls)
    elif isinstance(node, str) and "://" in node:
        urls.append(node)
    elif node is not None and type(node).__name__ in ("HttpUrl", "AnyUrl", "WebsocketUrl"):
        urls.append(str(node))


def redactor_for(cfg: AgentConfig | None) -> Redact:
    """A function that removes ``cfg``'s secrets and URL credentials from a text."""
    secrets: list[str] = []
    urls: list[str] = []
    if cfg is not None:
        _walk(cfg, secrets, urls)
        try:
            password = cfg.keystore_password()
        except ConfigError:  # an unreadable password file is reported by the command, not here
            password = None
        if password is not None:
            secrets.append(password.get_secret_value())
        reputation = cfg.reputation_password()
        if reputation is not None:
            secrets.append(reputation.get_secret_value())
    return text_redactor(secrets, urls)


def text_redactor(secrets: Iterable[str], urls: Iterable[str] = ()) -> Redact:
    """Known secret values replaced, URLs reduced to scheme://host[:port]/**********."""
    redactor = Redactor(secrets)
    safe_urls = sorted(
        {(url, redact_url(url)) for url in urls if url and redact_url(url) != url},
        key=lambda pair: len(pair[0]),
        reverse=True,
    )

    def redact(text: str) -> str:
        for url, safe in safe_urls:
            if url in text:
                text = text.replace(url, safe)
        return redactor.redact(text)

    return redact


class _TextFormatter(logging.Formatter):
    def __init__(self, redact: Redact) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self._redact = redact

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC ISO 8601), level, logger, message[, exc]."""

    def __init__(self, redact: Redact) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self._redact(record.getMessage()),
        }
        if record.exc_info:
            line["exc"] = self._redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False)


def configure_logging(cfg: LoggingConfig, redact: Redact | None = None) -> None:
    """Install the agent's handlers on the root logger (replacing any installed before)."""
    redact = redact or text_redactor(())
    formatter: logging.Formatter = (
        _JsonFormatter(redact) if cfg.format == "json" else _TextFormatter(redact)
    )
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if cfg.file is not None:
        cfg.file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(
                cfg.file,
                maxBytes=int(cfg.file_max_mb * 1024 * 1024),
                backupCount=cfg.file_backups,
                encoding="utf-8",
            )
        )
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    root.setLevel(cfg.level.upper())
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
