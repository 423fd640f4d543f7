"""The one secret redactor: whatever reaches a log line, an exception message, an alert, a
``Reading.error``, a config dump or a metrics label passes through here first.

* :class:`Redactor`: registered secret values (API keys, bot tokens, webhook paths, also in
  their URL-quoted forms) and values of credential-named query parameters and headers are
  masked in free text, URLs and header maps;
* :func:`redact_url`: an RPC or database URL safe to show (user info dropped; by default the
  path and query, where providers put API keys, hidden too); :func:`redact_tree`: a dumped
  config tree with every ``SecretStr`` masked;
* :func:`redact_endpoint`: an RPC URL reduced to a metrics label (``host[:port]``).
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from pydantic import SecretStr

# The mask of config dumps and shown URLs.
REDACTED = "**********"
# The default mask of free text (feeds' logs and errors).
TEXT_MASK = "***"

# Header and query-parameter names whose values are credentials, compared case-insensitively.
SENSITIVE_NAMES = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "x-cg-pro-api-key",
        "x-cg-demo-api-key",
        "x_cg_pro_api_key",
        "x_cg_demo_api_key",
        "x-mbx-apikey",
        "api-key",
        "api_key",
        "apikey",
        "key",
        "secret",
        "token",
        "access_token",
        "signature",
        "cookie",
        "set-cookie",
    }
)
# ``name=value`` of a credential-named query parameter inside free text (a URL in a message).
_SENSITIVE_QUERY_RE = re.compile(
    r"(?i)\b(api[_-]?key|apikey|access_token|token|secret|signature|key|"
    r"x_cg_pro_api_key|x_cg_demo_api_key)=([^&\s\"']+)"
)


class Redactor:
    """Replaces known secret values, and values of credential-named fields, with ``mask``.

    Secrets are registered once (API keys, bearer tokens, webhook URLs); every text a feed or an
    alert channel logs or puts into an exception or a ``Reading.error`` passes through
    :meth:`redact` (or calling the redactor). A secret is also masked URL-quoted, because HTTP
    clients put the full URL, secret path and all, in their errors.
    """

    def __init__(self, secrets: Iterable[str] = (), *, mask: str = TEXT_MASK) -> None:
        self.mask = mask
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        """Register a secret value; empty or very short values are ignored (they'd mangle text)."""
        if secret and len(secret) >= 4:
            self._secrets.update({secret, quote(secret, safe=""), quote(secret)})

    def merge(self, other: Redactor) -> None:
        """Register every secret ``other`` knows."""
        self._secrets.update(other._secrets)

    def redact(self, text: str) -> str:
        """``text`` with every registered secret, and every credential-named ``name=value``
        query parameter, replaced (longest secrets first, so overlaps vanish)."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, self.mask)
        return _SENSITIVE_QUERY_RE.sub(lambda m: f"{m.group(1)}={self.mask}", text)

    __call__ = redact

    def redact_url(self, url: str) -> str:
        """A URL with credential-named query values and any registered secret replaced."""
        parts = urlsplit(url)
        if parts.query:
            pairs = [
                (name, self.mask if name.lower() in SENSITIVE_NAMES else value)
                for name, value in parse_qsl(parts.query, keep_blank_values=True)
            ]
            parts = parts._replace(query=urlencode(pairs, safe="*,:/"))
        if parts.password or parts.username:
            parts = parts._replace(netloc=parts.hostname or "")
        return self.redact(urlunsplit(parts))

    def redact_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """A copy of ``headers`` safe to log."""
        return {
            name: self.mask if name.lower() in SENSITIVE_NAMES else self.redact(value)
            for name, value in headers.items()
        }

    def format_exception(self, exc: BaseException) -> str:
        """A full traceback of ``exc`` with secrets removed, for unexpected errors."""
        return self.redact("".join(traceback.format_exception(exc)))


def redact_url(url: str, hide_path: bool = True) -> str:
    """A URL safe to log: credentials removed and, with ``hide_path`` (the default, right for
    RPC URLs, whose providers put API keys in the path or query), the path and query replaced
    by ``**********``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    if not parts.scheme or not parts.netloc:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    if parts.username is not None or parts.password is not None:
        netloc = f"{REDACTED}@{netloc}"
    if hide_path:
        hidden = parts.path not in ("", "/") or bool(parts.query) or bool(parts.fragment)
        return f"{parts.scheme}://{netloc}" + (f"/{REDACTED}" if hidden else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def redact_tree(node: Any) -> Any:
    """A dumped config tree with secrets as ``**********`` and URLs without credentials."""
    if isinstance(node, SecretStr):
        return REDACTED
    if isinstance(node, dict):
        return {str(k): redact_tree(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [redact_tree(v) for v in node]
    if isinstance(node, Path):
        return str(node)
    if isinstance(node, Enum):
        return node.value
    if isinstance(node, str) and "://" in node:
        return redact_url(node, hide_path=False)
    return node


# A host label that looks like a key (long run of letters and digits with at least one digit)
# is masked: some providers put the API key in a subdomain.
_SECRET_LOOKING_LABEL = re.compile(r"^(?=.*\d)[A-Za-z0-9_-]{16,}$")


def redact_endpoint(url: str) -> str:
    """An RPC URL reduced to a safe metrics label: ``host[:port]``, nothing else.

    Path, query, fragment and user info (where providers put API keys) are dropped, and a host
    label that looks like a key becomes ``*``. Unparseable input becomes ``"unknown"``.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return "unknown"
    if not host:
        return "unknown"
    labels = ["*" if _SECRET_LOOKING_LABEL.match(label) else label for label in host.split(".")]
    safe_host = ".".join(labels)
    if ":" in safe_host:  # IPv6 literal
        safe_host = f"[{safe_host}]"
    return f"{safe_host}:{port}" if port is not None else safe_host
