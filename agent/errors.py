"""Every exception the agent defines, and the one failure contract they follow.

The contract:

- Each class here is a ``TemporaryError`` or a ``FatalError``; retry decisions are driven by
  the class, never by parsing messages. ``TemporaryError`` may go away if the same operation is
  tried again later (timeouts, 429, 5xx, a node that lags, a database that is locked).
  ``FatalError`` will not: retrying the same operation fails the same way (bad config, wrong
  password, a 4xx, a simulation that reverts, a refusal by the risk gate, a constraint the
  journal enforces). "Fatal" is about the operation, not the process: a fatal trade fails that
  trade and the agent goes on with the next block.
- Nothing outside this module defines an exception class (``tests/unit/test_errors.py`` checks);
  other modules raise these and re-export nothing.
- Third-party exceptions are translated at the boundary that meets them: SQLAlchemy errors in
  ``agent.store.journal`` (``JournalUnavailable`` / ``JournalRejected``), HTTP and ccxt errors in
  the feeds, JSON-RPC errors in ``agent.chain.rpc``.
- Whatever a trade task raises, this hierarchy or not, is contained by the engine: logged with a
  redacted traceback (unexpected classes only), journaled ``failed`` with its reason, counted,
  published as ``TradeFailed`` (alerted); the next block trades. A background source (feed
  poller, CEX stream, alert worker, Telegram poller) that raises is restarted with backoff and
  published as ``SourceFailed`` (alerted) once per outage; it never ends the engine.
- Messages never carry secrets: callers pass addresses, hashes and field names, never keys,
  passwords, tokens, webhook URLs or database URLs.
"""

from __future__ import annotations

from typing import Any


class AgentError(Exception):
    """Base of every error the agent raises on purpose (always via one of the two below)."""


class TemporaryError(AgentError):
    """A failure that may go away on retry (network, rate limit, node hiccup, locked database)."""


class FatalError(AgentError):
    """A failure that retrying the same operation cannot fix."""


# -- temporary ---------------------------------------------------------------------------------


class RateLimitedError(TemporaryError):
    """The remote side said 429; ``retry_after_s`` is its Retry-After, when it gave one."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StaleDataError(TemporaryError):
    """A reading is older than its max age, or its last fetch failed."""


class ServerError(TemporaryError):
    """5xx, a timeout, a dropped connection or a body that is not JSON: worth a retry.

    ``retry_after_s`` is set when a 503 carried ``Retry-After``.
    """

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class CircuitOpenError(TemporaryError):
    """The source failed repeatedly; calls fail fast until the cool-down has passed."""


class ResponseShapeError(TemporaryError):
    """The response parsed but lacks a field or has the wrong type (schema drift)."""


class RpcTransportError(TemporaryError):
    """A JSON-RPC request did not produce a usable answer (network, HTTP status, bad body)."""


class MulticallError(TemporaryError):
    """A batch could not be read at a single consistent block (read again at the next one)."""


class LogQueryRefused(TemporaryError):
    """The provider refused an eth_getLogs even for a single block (too many results)."""


class PoolReadError(TemporaryError):
    """A pool's state could not be read (call reverted, not a pool, transport failure)."""


class FeeCapExceeded(TemporaryError):
    """The fees the network needs are above the configured cap; try again later."""


class JournalUnavailable(TemporaryError):
    """The journal's database could not be reached or was locked (SQLite ``database is
    locked``, a dropped PostgreSQL connection): the write may succeed a moment later."""


# -- fatal -------------------------------------------------------------------------------------


class ConfigError(FatalError):
    """The configuration is invalid; the CLI prints it and exits 2."""


class FieldProblems(ConfigError, ValueError):
    """Problems of named fields, raised from a pydantic model validator (a ``ValueError``, so
    pydantic reports it) with each field path relative to the model being validated."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in problems))
        self.problems = problems


class OhlcvError(ConfigError):
    """The candle data is missing, unreadable or malformed (a usage problem: exit code 2)."""


class WalletError(FatalError):
    """Keystore problems: missing file, wrong password, malformed keystore."""


class HttpStatusError(FatalError):
    """A 4xx other than 429: the request itself is wrong (or unauthorised); retrying won't help."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class CexRejected(FatalError):
    """The exchange refused the request (unknown symbol, bad parameters, auth)."""


class RpcResponseError(FatalError):
    """The node answered with a JSON-RPC error object (``code``, ``message``, ``data``): an
    answer, not a transport failure, so asking again gets the same one."""

    def __init__(self, method: str, error: dict[str, Any]) -> None:
        self.method = method
        self.code = int(error.get("code", 0))
        self.rpc_message = str(error.get("message", ""))
        self.data = error.get("data")
        super().__init__(f"{method}: {self.code} {self.rpc_message}")


class JsonRpcError(FatalError):
    """The devnet's bare JSON-RPC client got an error object back (Anvil, deploys, cheats)."""

    def __init__(self, method: str, error: Any) -> None:
        super().__init__(f"{method}: {error}")
        self.method = method
        self.error = error


class BroadcastRejected(FatalError):
    """The submit RPC refused the signed transaction (``reason`` is its message): this signed
    transaction will never be accepted; a new one (new nonce or fees) is another operation."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"broadcast rejected: {reason}")
        self.reason = reason


class NonceTooLow(BroadcastRejected):
    """The nonce was already used on chain (by another process, or a crash we recovered from)."""


class RelayRejected(FatalError):
    """A bundle relay refused a request (a bad ``X-Flashbots-Signature``, a malformed bundle, an
    unknown method); ``relay`` is its URL without credentials, ``reason`` its message."""

    def __init__(self, relay: str, reason: str) -> None:
        super().__init__(f"relay {relay} refused: {reason}")
        self.relay = relay
        self.reason = reason


class BundleNotIncluded(FatalError):
    """A bundle was not in any of its target blocks: nothing of it landed, its nonces are free
    again. The same bundle cannot land later."""

    def __init__(self, bundle_hash: str, first_block: int, last_block: int) -> None:
        super().__init__(f"bundle {bundle_hash} not included in blocks {first_block}-{last_block}")
        self.bundle_hash = bundle_hash


class InstanceLocked(FatalError):
    """Another agent holds the journal or the wallet; the CLI names it and exits 2."""


class LockUnavailable(FatalError):
    """An instance lock file cannot be created (a read-only or foreign directory)."""


class SimulationRevert(FatalError):
    """``eth_call`` (or the local exact math) of a transaction reverted; ``reason`` is the
    decoded revert reason. The same call at the same state reverts again."""

    def __init__(self, reason: str, data: bytes = b"") -> None:
        super().__init__(f"simulation reverted: {reason}")
        self.reason = reason
        self.data = data


class SwapRevert(SimulationRevert, ValueError):
    """The local swap math hit a ``require`` the chain would revert on.

    ``reason`` is the Solidity revert string where there is one (``'SPL'``, ``'LS'``,
    ``'UniswapV2Library: INSUFFICIENT_LIQUIDITY'``) or a short description otherwise. It is a
    ``ValueError`` too, because the arguments are what made the swap impossible.
    """


class InsufficientLiquidity(SwapRevert):
    """The pool cannot deliver the requested amount (the quoter and router would revert)."""


class TicksNotLoaded(SwapRevert):
    """A V3 quote would move the price past the ticks loaded for this pool state (the registry
    loads a window of tick-bitmap words around the price): the answer is refused rather than
    guessed. Callers treat it like any ``SwapRevert`` (no quote); a later refresh that extends
    the window can quote it. ``direction`` is "below" or "above" the loaded range."""

    def __init__(self, pool: str, direction: str) -> None:
        super().__init__(f"pool {pool}: the swap leaves the loaded ticks ({direction})")
        self.pool = pool
        self.direction = direction


class SigningRefused(FatalError):
    """The signing policy refused a transaction before the key saw it; ``reason`` says why.
    ``rule`` names the check: "risk" (the gate's last look: paused, halted), "target",
    "calldata", "simulation" or "balance_change"."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(f"signing refused ({rule}): {reason}")
        self.rule = rule
        self.reason = reason


class UnknownRouterCall(FatalError, ValueError):
    """Calldata that is not one of the 1inch AggregationRouterV6 functions the agent accepts
    (or does not decode as one)."""


class RiskRejected(FatalError):
    """The risk gate refused an intent; ``reason`` is machine-readable (e.g. ``gas_price_cap``)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class InsufficientPaperBalance(FatalError):
    """The paper portfolio cannot pay for a paper fill."""


class JournalRejected(FatalError):
    """The journal's database refused a write for good (a constraint, a type, a schema that is
    not migrated): writing the same row again fails the same way."""


class InvalidTransition(JournalRejected):
    """A status change the state machine does not allow (a bug, or a corrupted journal)."""


class JournalNotFound(JournalRejected):
    """The intent or transaction named is not in the journal."""


class OrderRejected(FatalError, ValueError):
    """A conditional order that cannot be placed or cancelled as asked (a bad price, amount or
    pair, an unknown order, one whose trade is already in flight); the message says which."""


class AlertDeliveryError(FatalError):
    """A channel refused a message for good (bad token, unknown webhook, invalid body).

    Retryable failures use ``TemporaryError`` / ``RateLimitedError`` instead. Messages of all
    three are safe to log: channels build them without tokens or URLs.
    """


class WrongChainError(ConfigError):
    """An RPC endpoint serves another chain than ``chain.chain_id`` (the message names both)."""


class TokenRefused(SimulationRevert):
    """A token reverts a transfer to or from us (blocklist, pause): trading it cannot work.
    ``token`` is its address."""

    def __init__(self, token: str, reason: str) -> None:
        super().__init__(f"token {token} refuses the transfer: {reason}")
        self.token = token


class WebhookRefused(FatalError):
    """A refused signal webhook request: ``status`` is the HTTP status and ``reason`` what the
    sender is told and the journal records (never a secret). Fatal: the same request is refused
    again."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
