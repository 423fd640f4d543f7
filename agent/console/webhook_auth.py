"""Signal webhooks' authentication: signatures, TradingView passphrases, nonces, rate limits.

Each ``[webhooks.<name>]`` has its own secret and its own authentication, not the console's
bearer token (TradingView and scripts cannot hold that). Two schemes, by ``format``:

* ``json``: the header ``X-Signature: t=<unix seconds>,v1=<hex>`` where ``hex`` is
  HMAC-SHA256(secret, ``<t>.<raw body>``) (``sign_body``).
* ``tradingview``: TradingView cannot compute a signature or set headers, so its alert message
  (a JSON body with ``{{...}}`` placeholders) carries ``passphrase`` =
  HMAC-SHA256(secret, ``tradingview:<name>``) (``tradingview_passphrase``), a ``timestamp``
  (``{{timenow}}``) and a ``nonce``. The passphrase is derived, so the secret itself never
  leaves the agent; it is static, so keep the URL on HTTPS and the sender's IPs allowlisted.

Both need a ``nonce`` in the body and a timestamp within ``max_age_s``; a nonce is accepted once
(per webhook, remembered past the window and reloaded from the journal at start). Requests are
limited to ``max_per_minute`` per webhook, counted before authentication so a flood of forgeries
cannot fill the journal. Every authenticated request and every bad signature is journaled as a
control action of source ``webhook``; the secret, the passphrase and the signature never are.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.config.models import WebhookConfig
from agent.errors import WebhookRefused
from agent.store.journal import Journal
from strategies.signal import TradingSignal

SIGNATURE_HEADER = "X-Signature"
MAX_BODY_BYTES = 8_192
NONCES_KEPT = 10_000  # per webhook; far more than max_per_minute allows within a window
RATE_WINDOW_S = 60.0
JOURNAL_SOURCE = "webhook"
SignalSink = Callable[[TradingSignal], bool]


def sign_body(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Signature`` header value for ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def tradingview_passphrase(secret: str, name: str) -> str:
    """The ``passphrase`` a TradingView alert of webhook ``name`` carries (hex)."""
    return hmac.new(secret.encode(), f"tradingview:{name}".encode(), hashlib.sha256).hexdigest()


class SignalMessage(BaseModel):
    """The body of a signal. Exactly one of ``amount`` (whole tokens of ``token``) and
    ``amount_usd``. Unknown keys are ignored: TradingView messages often carry extra
    placeholders (``{{close}}``, ``{{ticker}}``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    action: Literal["buy", "sell"]
    token: str = Field(min_length=1, max_length=64)
    amount: str | None = Field(None, max_length=40)
    amount_usd: float | None = Field(None, gt=0, allow_inf_nan=False)
    nonce: str = Field(min_length=8, max_length=128)

    @field_validator("action", mode="before")
    @classmethod
    def _lower_action(cls, value: object) -> object:
        # {{strategy.order.action}} is "buy"/"sell"; people also type "BUY"
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("amount", mode="before")
    @classmethod
    def _amount_text(cls, value: object) -> object:
        # a JSON number is taken by its text: 0.1 stays exactly 0.1 tokens
        if isinstance(value, int | float) and not isinstance(value, bool):
            return repr(value)
        return value

    @model_validator(mode="after")
    def _one_amount(self) -> SignalMessage:
        if (self.amount is None) == (self.amount_usd is None):
            raise ValueError("give exactly one of 'amount' (tokens) and 'amount_usd'")
        return self


@dataclass(frozen=True, slots=True)
class AuthenticatedSignal:
    """A request that proved knowledge of the secret: its timestamp and nonce checked later."""

    name: str
    timestamp: float
    message: SignalMessage | None  # None when the signed body is not a valid signal
    problem: str  # why ``message`` is None


class WebhookReceiver:
    """Authenticates webhook requests and remembers nonces and request times (per webhook)."""

    def __init__(
        self, webhooks: Mapping[str, WebhookConfig], clock: Callable[[], float] = time.time
    ) -> None:
        self.webhooks = dict(webhooks)
        self._clock = clock
        self._nonces: dict[str, collections.OrderedDict[str, float]] = {
            name: collections.OrderedDict() for name in webhooks
        }
        self._requests: dict[str, collections.deque[float]] = {
            name: collections.deque() for name in webhooks
        }
        self._loaded = False

    def __repr__(self) -> str:  # never a secret
        return f"WebhookReceiver({sorted(self.webhooks)})"

    def now(self) -> float:
        return self._clock()

    async def load_nonces(self, journal: Journal) -> None:
        """Remember the nonces journaled within the longest window (once, at first use):
        a restart must not make a captured request good again."""
        if self._loaded:
            return
        window = max((w.max_age_s for w in self.webhooks.values()), default=0.0)
        since = datetime.fromtimestamp(self.now() - 2 * window - 5, UTC)
        for action in await journal.list_control_actions(source=JOURNAL_SOURCE, since=since):
            try:
                argument = json.loads(action.argument)
                name, nonce = str(argument["webhook"]), str(argument["nonce"])
            except (ValueError, KeyError, TypeError):
                continue
            if name in self._nonces:
                self._remember(name, nonce, action.at.timestamp())
        self._loaded = True

    def within_rate(self, name: str) -> bool:
        """Count a request of ``name``; False when it is over ``max_per_minute``."""
        now = self.now()
        times = self._requests[name]
        while times and times[0] <= now - RATE_WINDOW_S:
            times.popleft()
        if len(times) >= self.webhooks[name].max_per_minute:
            return False
        times.append(now)
        return True

    def authenticate(self, name: str, signature: str | None, body: bytes) -> AuthenticatedSignal:
        """Check the signature (or TradingView passphrase) of ``body``; raises
        ``WebhookRefused(401)`` when it does not prove the secret."""
        config = self.webhooks[name]
        secret = config.secret.get_secret_value()
        parsed = _json_object(body)
        if config.format == "json":
            timestamp, presented = _parse_signature_header(signature)
            expected = sign_body(secret, int(timestamp), body).partition(",v1=")[2]
            if not hmac.compare_digest(presented.encode(), expected.encode()):
                raise WebhookRefused(401, "bad signature")
        else:
            passphrase = parsed.get("passphrase") if parsed is not None else None
            if not isinstance(passphrase, str) or not hmac.compare_digest(
                passphrase.encode(), tradingview_passphrase(secret, name).encode()
            ):
                raise WebhookRefused(401, "bad signature (passphrase)")
            timestamp = _parse_timestamp(parsed.get("timestamp") if parsed is not None else None)
        if parsed is None:
            return AuthenticatedSignal(name, timestamp, None, "the body is not a JSON object")
        try:
            message = SignalMessage.model_validate(parsed)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"
                for error in exc.errors(include_input=False, include_url=False)
            )
            return AuthenticatedSignal(name, timestamp, None, problems)
        return AuthenticatedSignal(name, timestamp, message, "")

    def check_fresh(self, signal: AuthenticatedSignal) -> None:
        """Refuse a timestamp outside the window (401) or a nonce already used (409); else
        remember the nonce."""
        config = self.webhooks[signal.name]
        now = self.now()
        if abs(now - signal.timestamp) > config.max_age_s:
            raise WebhookRefused(
                401,
                f"timestamp is {now - signal.timestamp:+.0f} s off "
                f"(allowed ±{config.max_age_s:g} s)",
            )
        if signal.message is None:
            return
        nonces = self._nonces[signal.name]
        if signal.message.nonce in nonces:
            raise WebhookRefused(409, "nonce already used (a replayed request)")
        self._remember(signal.name, signal.message.nonce, now)

    def _remember(self, name: str, nonce: str, at: float) -> None:
        nonces = self._nonces[name]
        nonces[nonce] = at
        nonces.move_to_end(nonce)
        while len(nonces) > NONCES_KEPT:
            nonces.popitem(last=False)

    def check_allowed(self, name: str, message: SignalMessage) -> None:
        """Refuse (403) an action or token this webhook may not trade, or a USD amount over
        its cap (a token amount's notional is checked by the strategy, at the pool price)."""
        config = self.webhooks[name]
        if message.action not in config.actions:
            raise WebhookRefused(403, f"action {message.action!r} is not allowed here")
        wanted = message.token.lower()
        if not any(wanted == ref.lower() for ref in config.tokens):
            raise WebhookRefused(403, f"token {message.token!r} is not allowed here")
        if message.amount_usd is not None and message.amount_usd > config.max_notional_usd:
            raise WebhookRefused(
                403,
                f"amount_usd {message.amount_usd:,.2f} is over max_notional_usd "
                f"{config.max_notional_usd:,.2f}",
            )

    def to_signal(self, name: str, message: SignalMessage) -> TradingSignal:
        config = self.webhooks[name]
        return TradingSignal(
            webhook=name,
            nonce=message.nonce,
            action=message.action,
            token=message.token,
            quote=config.quote,
            amount=message.amount,
            amount_usd=message.amount_usd,
            max_notional_usd=config.max_notional_usd,
            received_at=self.now(),
        )


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _parse_signature_header(value: str | None) -> tuple[float, str]:
    if not value:
        raise WebhookRefused(401, f"missing {SIGNATURE_HEADER} header")
    fields = dict(part.strip().partition("=")[::2] for part in value.split(","))
    try:
        timestamp = int(fields["t"])
        return float(timestamp), fields["v1"]
    except (KeyError, ValueError):
        raise WebhookRefused(
            401, f"malformed {SIGNATURE_HEADER} header (t=<unix>,v1=<hex>)"
        ) from None


def _parse_timestamp(value: object) -> float:
    """Unix seconds (number or text) or ISO 8601 (TradingView's ``{{timenow}}``)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise WebhookRefused(401, "timestamp is not unix seconds or ISO 8601") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    raise WebhookRefused(401, "missing timestamp")
