"""Error hierarchy: retry decisions are driven by the class, never by parsing messages.

``TemporaryError`` is worth retrying (timeouts, 429, 5xx, a node that lags); ``FatalError`` is
not (bad config, wrong password, a contract that does not exist). Messages never carry secrets:
callers pass addresses, hashes and field names, never keys, passwords, tokens or webhook URLs.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class TemporaryError(AgentError):
    """A failure that may go away on retry (network, rate limit, node hiccup)."""


class RateLimitedError(TemporaryError):
    """The remote side said 429; ``retry_after_s`` is its Retry-After, when it gave one."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StaleDataError(TemporaryError):
    """A reading is older than its max age, or its last fetch failed."""


class FatalError(AgentError):
    """A failure that retrying cannot fix."""


class ConfigError(FatalError):
    """The configuration is invalid; the CLI prints it and exits 2."""


class WalletError(FatalError):
    """Keystore problems: missing file, wrong password, malformed keystore."""


class SimulationRevert(AgentError):
    """``eth_call`` of a transaction reverted; ``reason`` is the decoded revert reason."""

    def __init__(self, reason: str, data: bytes = b"") -> None:
        super().__init__(f"simulation reverted: {reason}")
        self.reason = reason
        self.data = data


class RiskRejected(AgentError):
    """The risk gate refused an intent; ``reason`` is machine-readable (e.g. ``gas_price_cap``)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
