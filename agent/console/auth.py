"""Who may use the console: a bearer token, an IP allowlist, and short-lived stream tickets.

The token travels only in the ``Authorization: Bearer`` header (never a cookie, so a page on
another origin cannot make the browser send it: control endpoints are CSRF-safe without a
CSRF token). ``EventSource`` cannot set headers, so the dashboard trades its token for a
ticket (an authenticated POST) and opens the event stream with ``?ticket=``: an HMAC of an
expiry under the token, valid ``TICKET_TTL_S`` seconds and good for the stream only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from pydantic import SecretStr

from agent.errors import ConfigError

TICKET_TTL_S = 60.0
_TICKET_PURPOSE = b"console-events"


def load_or_create_token(configured: SecretStr | None, token_file: Path) -> SecretStr:
    """``configured`` (``console.token``) if set, else the token in ``token_file``, written
    there (mode 0600, never overwritten) at the first start."""
    if configured is not None:
        return configured
    if token_file.is_file():
        mode = stat.S_IMODE(token_file.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"console.token_file: {token_file} is readable by other users "
                f"(mode {mode:o}): run `chmod 600 {token_file}`"
            )
        text = token_file.read_text(encoding="utf-8").strip()
        if len(text) < 16:
            raise ConfigError(
                f"console.token_file: {token_file} holds no usable token (16+ characters); "
                "delete it to have a new one generated"
            )
        return SecretStr(text)
    token = secrets.token_urlsafe(32)
    try:
        token_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ConfigError(
            f"console.token_file: cannot create {token_file}: {exc.strerror or exc}"
        ) from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(token + "\n")
    return SecretStr(token)


class IpAllowlist:
    """Loopback clients (including an SSH tunnel's) always; others only when listed."""

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]

    def allows(self, client_ip: str | None) -> bool:
        if client_ip is None:
            return False
        try:
            address = ipaddress.ip_address(client_ip)
        except ValueError:
            return False
        if address.is_loopback:
            return True
        return any(address in network for network in self.networks)


class ConsoleAuth:
    """Checks bearer tokens and issues/checks event-stream tickets (``time.time`` seconds)."""

    def __init__(self, token: SecretStr, clock: Callable[[], float] = time.time) -> None:
        self._token = token.get_secret_value().encode()
        self._clock = clock

    def __repr__(self) -> str:  # never the token
        return "ConsoleAuth(token=**********)"

    def bearer_ok(self, authorization: str | None) -> bool:
        if not authorization:
            return False
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return False
        return hmac.compare_digest(presented.strip().encode(), self._token)

    def issue_ticket(self) -> tuple[str, float]:
        """A ticket for the event stream and its expiry (unix seconds)."""
        expires = self._clock() + TICKET_TTL_S
        payload = f"{expires:.3f}:{secrets.token_hex(8)}".encode()
        mac = hmac.new(self._token, _TICKET_PURPOSE + b"|" + payload, hashlib.sha256).digest()
        ticket = base64.urlsafe_b64encode(payload).decode() + "." + mac.hex()
        return ticket, expires

    def ticket_ok(self, ticket: str | None) -> bool:
        if not ticket or "." not in ticket:
            return False
        encoded, _, mac_hex = ticket.partition(".")
        try:
            payload = base64.urlsafe_b64decode(encoded.encode())
            expected = hmac.new(
                self._token, _TICKET_PURPOSE + b"|" + payload, hashlib.sha256
            ).hexdigest()
            if not hmac.compare_digest(expected, mac_hex):
                return False
            expires = float(payload.decode().split(":", 1)[0])
        except (ValueError, UnicodeDecodeError):
            return False
        return self._clock() <= expires
