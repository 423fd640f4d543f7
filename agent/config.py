"""Configuration: ``agent.toml`` plus ``.env``, validated by pydantic models.

Loading (:meth:`AgentConfig.load`):

1. The TOML file is parsed with ``tomllib``.
2. ``${VAR}`` and ``${VAR:-default}`` in string values are replaced from the environment: real
   environment variables first, then the ``.env`` file (``python-dotenv``; it never overrides a
   real variable and is never written into ``os.environ``). ``$${`` is a literal ``${``.
3. The result is validated. Unknown keys are errors (typos are caught), and every problem is
   reported at once by its dotted path with what was expected, e.g.
   ``risk.max_slippage_bps: must be <= 10000 (got 20000)``, as a ``ConfigError``.

Secrets (API keys, tokens, webhook URLs, passwords) are ``SecretStr``: they print as
``'**********'`` in reprs, in :meth:`AgentConfig.redacted_dump` and are never echoed in error
messages. URLs are shown without credentials, paths or queries, since RPC providers put API keys
there (``redact_url``).

Relative paths in the file are relative to the directory holding the config file.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
import types
from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit, urlunsplit

from dotenv import dotenv_values
from eth_utils import is_checksum_address, is_hex_address, to_checksum_address
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agent.chain.registry import (
    DEVNET_CHAIN,
    KNOWN_CHAIN_IDS,
    default_deployment_path,
    load_deployment,
)
from agent.errors import ConfigError
from strategies.arbitrage import ArbitrageParams
from strategies.cex_dex import CexDexParams

REDACTED = "**********"
DEFAULT_PASSWORD_ENV = "DEFI_AGENT_KEYSTORE_PASSWORD"
DEFAULT_STORE_URL = "sqlite+aiosqlite:///./data/agent.db"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,31}")


# ---------------------------------------------------------------------------------------------
# Field-level problems raised from model validators. Pydantic reports a model validator's error
# at the model's own location; these carry the field (relative to that model) so the message
# can name ``risk.max_trade_usd`` instead of just ``risk``.


class _FieldProblems(ValueError):
    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in problems))
        self.problems = problems


def _raise_if(problems: list[tuple[str, str]]) -> None:
    if problems:
        raise _FieldProblems(problems)


# ---------------------------------------------------------------------------------------------
# Reusable field types.


def _checksum_address(value: object) -> str:
    if not isinstance(value, str) or not is_hex_address(value):
        raise ValueError("must be a 0x-prefixed 20-byte hex address")
    if value != value.lower() and value != value.upper() and not is_checksum_address(value):
        raise ValueError(f"bad EIP-55 checksum (expected {to_checksum_address(value)})")
    return str(to_checksum_address(value))


def _token_ref(value: object) -> str:
    """A token symbol (``WETH``) or a 0x address (returned checksummed)."""
    if isinstance(value, str) and value.startswith("0x"):
        return _checksum_address(value)
    if not isinstance(value, str) or not _SYMBOL.fullmatch(value):
        raise ValueError("must be a token symbol like 'WETH' or a 0x address")
    return value


def _pair(value: object) -> str:
    if not isinstance(value, str) or value.count("/") != 1:
        raise ValueError("must be 'BASE/QUOTE', e.g. 'WETH/USDC'")
    base, quote = (part.strip() for part in value.split("/"))
    base, quote = _token_ref(base), _token_ref(quote)
    if base == quote:
        raise ValueError("base and quote must differ")
    return f"{base}/{quote}"


def _url(schemes: tuple[str, ...]) -> Any:
    def check(value: object) -> str:
        if not isinstance(value, str):
            raise ValueError("must be a URL string")
        parts = urlsplit(value.strip())
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"must be a URL with scheme {' or '.join(schemes)} and a host")
        return value.strip()

    return check


def _blank_to_none(value: object) -> object:
    # ``${TOKEN:-}`` expands to "" when the variable is unset; treat it as "not configured".
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base_dir = (info.context or {}).get("base_dir")
    if base_dir is not None and not value.is_absolute():
        return (Path(base_dir) / value.expanduser()).resolve()
    return value.expanduser()


def _env_var_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError("must be an environment variable name like DEFI_AGENT_KEYSTORE_PASSWORD")
    return value


Address = Annotated[str, BeforeValidator(_checksum_address)]
TokenRef = Annotated[str, BeforeValidator(_token_ref)]
Pair = Annotated[str, BeforeValidator(_pair)]
RpcUrl = Annotated[str, BeforeValidator(_url(("http", "https", "ws", "wss")))]
HttpUrl = Annotated[str, BeforeValidator(_url(("http", "https")))]
WsUrl = Annotated[str, BeforeValidator(_url(("ws", "wss")))]
Secret = Annotated[SecretStr | None, BeforeValidator(_blank_to_none)]
ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]
EnvVarName = Annotated[str, AfterValidator(_env_var_name)]
Gwei = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
Usd = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Bps = Annotated[int, Field(ge=0, le=10_000)]
DexName = Literal["uniswap_v2", "sushiswap", "uniswap_v3"]
FeeTier = Literal[100, 500, 3000, 10000]
ALL_DEXES: tuple[DexName, ...] = ("uniswap_v2", "sushiswap", "uniswap_v3")
ALL_FEE_TIERS: tuple[FeeTier, ...] = (100, 500, 3000, 10000)
LogLevel = Literal["debug", "info", "warning", "error", "critical"]


def _gwei_to_wei(gwei: Decimal) -> int:
    return int(gwei * 10**9)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------
# Sections.


class ChainConfig(_Section):
    """Which chain and how to reach it. ``rpc_urls`` are tried in order (failover)."""

    name: str = Field("devnet", pattern=r"^[a-z0-9][a-z0-9_-]*$")
    chain_id: int = Field(31337, gt=0)
    rpc_urls: list[RpcUrl] = Field(default_factory=lambda: ["http://127.0.0.1:8545"], min_length=1)
    ws_url: WsUrl | None = None
    submit_rpc_url: HttpUrl | None = None
    poll_interval_s: float = Field(1.0, gt=0, le=60)
    request_timeout_s: float = Field(10.0, gt=0, le=120)
    deployment_file: ConfigPath | None = None

    @field_validator("chain_id")
    @classmethod
    def _chain_id_matches_name(cls, chain_id: int, info: ValidationInfo) -> int:
        name = info.data.get("name")
        expected = KNOWN_CHAIN_IDS.get(name) if isinstance(name, str) else None
        if expected is not None and expected != chain_id:
            raise ValueError(f"must be {expected} for chain '{name}' (got {chain_id})")
        return chain_id


class WalletConfig(_Section):
    """The signing key: an encrypted v3 keystore; its password never lives in this file."""

    keystore: ConfigPath = Path("./keys/keystore.json")
    password_env: EnvVarName = DEFAULT_PASSWORD_ENV
    password_file: ConfigPath | None = None
    address: Address | None = None


class ExecutionConfig(_Section):
    """How trades are sent. Fee caps in gwei; slippage in basis points (1 bps = 0.01%)."""

    mode: Literal["live", "paper", "fork", "demo"] = "paper"
    slippage_bps: Bps = 50
    deadline_s: int = Field(120, gt=0, le=3600)
    gas_limit_margin_pct: int = Field(20, ge=0, le=200)
    max_fee_gwei: Gwei = Decimal(100)
    max_priority_fee_gwei: Annotated[Decimal, Field(ge=0, allow_inf_nan=False)] = Decimal(2)
    priority_fee_percentile: int = Field(50, ge=0, le=100)
    fee_bump_pct: Annotated[Decimal, Field(ge=10, le=200, allow_inf_nan=False)] = Decimal("12.5")
    replace_after_s: float = Field(60.0, gt=0)
    receipt_timeout_s: float = Field(180.0, gt=0)
    confirmations: int = Field(1, ge=1, le=64)
    arb_executor: Address | None = None
    paper_balances: dict[TokenRef, Annotated[Decimal, Field(ge=0)]] = Field(
        default_factory=lambda: {"USDC": Decimal(10_000), "WETH": Decimal(2)}
    )

    @property
    def max_fee_wei(self) -> int:
        """``max_fee_gwei`` in wei per gas."""
        return _gwei_to_wei(self.max_fee_gwei)

    @property
    def max_priority_fee_wei(self) -> int:
        """``max_priority_fee_gwei`` in wei per gas."""
        return _gwei_to_wei(self.max_priority_fee_gwei)

    @field_validator("max_priority_fee_gwei")
    @classmethod
    def _priority_below_max(cls, priority: Decimal, info: ValidationInfo) -> Decimal:
        max_fee = info.data.get("max_fee_gwei")
        if max_fee is not None and priority > max_fee:
            raise ValueError(f"must be <= max_fee_gwei ({max_fee}) (got {priority})")
        return priority


class RiskConfig(_Section):
    """Limits every intent must pass. USD amounts are valuations, never on-chain amounts."""

    max_gas_price_gwei: Gwei = Decimal(50)
    max_gas_to_profit_ratio: float = Field(0.5, gt=0, le=1)
    max_slippage_bps: Bps = 100
    max_price_impact_bps: Bps = 200
    max_trade_usd: Usd = 1_000.0
    max_token_exposure_usd: Usd = 5_000.0
    max_total_exposure_usd: Usd = 20_000.0
    daily_loss_limit_usd: Usd = 200.0
    max_drawdown_pct: float = Field(10.0, gt=0, le=100)
    token_allowlist: list[TokenRef] = Field(default_factory=lambda: ["WETH", "USDC", "WBTC", "DAI"])
    cooldown_s: float = Field(30.0, ge=0)
    revert_cooldown_s: float = Field(120.0, ge=0)
    kill_switch_file: ConfigPath = Path("./data/KILL")

    @property
    def max_gas_price_wei(self) -> int:
        """``max_gas_price_gwei`` in wei per gas."""
        return _gwei_to_wei(self.max_gas_price_gwei)

    @model_validator(mode="after")
    def _caps_are_nested(self) -> RiskConfig:
        problems = []
        for name in ("max_trade_usd", "max_token_exposure_usd"):
            value = getattr(self, name)
            if value > self.max_total_exposure_usd:
                problems.append(
                    (
                        name,
                        f"must be <= max_total_exposure_usd ({self.max_total_exposure_usd:g}) "
                        f"(got {value:g})",
                    )
                )
        _raise_if(problems)
        return self


class MarketConfig(_Section):
    """Which pools the agent watches: pools between ``tokens`` on ``dexes`` are discovered."""

    tokens: list[TokenRef] = Field(
        default_factory=lambda: ["WETH", "USDC", "WBTC", "DAI"], min_length=2
    )
    dexes: list[DexName] = Field(default_factory=lambda: list(ALL_DEXES), min_length=1)
    v3_fee_tiers: list[FeeTier] = Field(default_factory=lambda: list(ALL_FEE_TIERS))
    multicall_batch_size: int = Field(500, ge=1, le=5000)
    token_addresses: dict[str, Address] = Field(default_factory=dict)


class EngineConfig(_Section):
    """The tick loop."""

    block_source: Literal["auto", "ws", "poll"] = "auto"
    strategy_timeout_s: float = Field(2.0, gt=0)
    max_in_flight_per_pair: int = Field(1, ge=1, le=16)
    shutdown_grace_s: float = Field(10.0, gt=0, le=300)


# --- strategies ------------------------------------------------------------------------------


class GridParams(_Section):
    """Levels between ``lower_price`` and ``upper_price`` (quote per base) on ``pair``."""

    enabled: bool = False
    pair: Pair = "WETH/USDC"
    dex: DexName = "uniswap_v3"
    lower_price: Annotated[Decimal, Field(gt=0)] = Decimal(2500)
    upper_price: Annotated[Decimal, Field(gt=0)] = Decimal(3500)
    levels: int = Field(10, ge=2, le=500)
    spacing: Literal["arithmetic", "geometric"] = "arithmetic"
    order_size: Annotated[Decimal, Field(gt=0)] = Decimal("0.1")
    on_range_exit: Literal["stop", "recenter"] = "stop"

    @field_validator("upper_price")
    @classmethod
    def _bounds_ordered(cls, upper: Decimal, info: ValidationInfo) -> Decimal:
        lower = info.data.get("lower_price")
        if lower is not None and upper <= lower:
            raise ValueError(f"must be > lower_price ({lower}) (got {upper})")
        return upper


class DcaParams(_Section):
    """Buy ``buy_token`` with ``amount`` of ``spend_token`` every ``interval_s`` or on ``cron``.

    Exactly one schedule; with neither set, the default is one buy a day.
    """

    enabled: bool = False
    buy_token: TokenRef = "WETH"
    spend_token: TokenRef = "USDC"
    amount: Annotated[Decimal, Field(gt=0)] = Decimal(100)
    interval_s: float | None = Field(None, gt=0)
    cron: str | None = None
    dip_lookback_s: float = Field(7 * 86_400.0, gt=0)
    dip_threshold_pct: float = Field(10.0, gt=0, lt=100)
    dip_multiplier: float = Field(1.5, ge=1, le=10)
    fear_threshold: float = Field(-0.3, ge=-1, le=1)
    fear_multiplier: float = Field(1.25, ge=1, le=10)
    max_multiplier: float = Field(3.0, ge=1, le=10)
    route: Literal["auto", "pools", "oneinch"] = "auto"

    @model_validator(mode="before")
    @classmethod
    def _default_schedule(cls, data: Any) -> Any:
        # TOML has no null, so "no interval" can only be spelt by leaving the key out.
        if isinstance(data, dict) and "interval_s" not in data and "cron" not in data:
            return {**data, "interval_s": 86_400.0}
        return data

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, cron: str | None) -> str | None:
        from croniter import croniter

        if cron is not None and not croniter.is_valid(cron):
            raise ValueError("must be a 5-field cron expression like '0 9 * * 1'")
        return cron

    @field_validator("spend_token")
    @classmethod
    def _different_tokens(cls, spend_token: str, info: ValidationInfo) -> str:
        if spend_token == info.data.get("buy_token"):
            raise ValueError("must differ from buy_token")
        return spend_token

    @model_validator(mode="after")
    def _one_schedule(self) -> DcaParams:
        if self.interval_s is not None and self.cron is not None:
            _raise_if([("cron", "set only one of interval_s and cron (remove interval_s)")])
        return self


class WhaleFollowParams(_Section):
    """Copy trades of watched wallets at ``size_fraction`` of their size, with exits."""

    enabled: bool = False
    wallets: list[Address] = Field(default_factory=list)
    size_fraction: float = Field(0.05, gt=0, le=1)
    max_trade_usd: Usd = 1_000.0
    min_whale_trade_usd: float = Field(50_000.0, ge=0)
    max_delay_blocks: int = Field(2, ge=0, le=100)
    token_allowlist: list[TokenRef] = Field(default_factory=list)
    sentiment_gate: bool = True
    min_sentiment: float = Field(-0.2, ge=-1, le=1)
    take_profit_pct: float = Field(5.0, gt=0)
    stop_loss_pct: float = Field(3.0, gt=0, lt=100)
    max_hold_s: float = Field(86_400.0, gt=0)


class StrategiesConfig(_Section):
    arbitrage: ArbitrageParams = Field(default_factory=ArbitrageParams)
    cex_dex: CexDexParams = Field(default_factory=CexDexParams)
    grid: GridParams = Field(default_factory=GridParams)
    dca: DcaParams = Field(default_factory=DcaParams)
    whale_follow: WhaleFollowParams = Field(default_factory=WhaleFollowParams)


# --- feeds -----------------------------------------------------------------------------------


class OneInchFeed(_Section):
    """1inch Swap API v6 (bearer key from the 1inch developer portal)."""

    enabled: bool = False
    api_key: Secret = None
    base_url: HttpUrl = "https://api.1inch.dev/swap/v6.0"
    pairs: list[Pair] = Field(default_factory=lambda: ["WETH/USDC"])
    poll_interval_s: float = Field(10.0, gt=0)
    max_age_s: float = Field(30.0, gt=0)
    requests_per_s: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _key_when_enabled(self) -> OneInchFeed:
        if self.enabled and self.api_key is None:
            _raise_if([("api_key", "required when enabled (set ONEINCH_API_KEY in .env)")])
        return self


class CexCredentials(_Section):
    api_key: Secret = None
    secret: Secret = None
    password: Secret = None


class CexFeed(_Section):
    """ccxt exchanges; symbols in ccxt form. Keys are optional (only hedging needs them)."""

    enabled: bool = False
    exchanges: list[str] = Field(default_factory=lambda: ["binance", "kraken"], min_length=1)
    symbols: list[str] = Field(default_factory=lambda: ["ETH/USDT", "BTC/USDT"], min_length=1)
    use_websocket: bool = True
    poll_interval_s: float = Field(5.0, gt=0)
    max_age_s: float = Field(15.0, gt=0)
    token_map: dict[str, TokenRef] = Field(default_factory=lambda: {"ETH": "WETH", "BTC": "WBTC"})
    credentials: dict[str, CexCredentials] = Field(default_factory=dict)

    @field_validator("symbols")
    @classmethod
    def _ccxt_symbols(cls, symbols: list[str]) -> list[str]:
        for symbol in symbols:
            if symbol.count("/") != 1:
                raise ValueError(f"symbols must look like 'ETH/USDT' (got {symbol!r})")
        return symbols

    @model_validator(mode="after")
    def _credentials_for_listed_exchanges(self) -> CexFeed:
        _raise_if(
            [
                (f"credentials.{name}", f"exchange not in exchanges {self.exchanges}")
                for name in self.credentials
                if name not in self.exchanges
            ]
        )
        return self


class CoinGeckoFeed(_Section):
    """CoinGecko prices and community sentiment. ``demo`` and ``pro`` plans need ``api_key``."""

    enabled: bool = False
    plan: Literal["public", "demo", "pro"] = "public"
    api_key: Secret = None
    base_url: HttpUrl | None = None
    coin_ids: dict[TokenRef, str] = Field(
        default_factory=lambda: {
            "WETH": "ethereum",
            "WBTC": "bitcoin",
            "USDC": "usd-coin",
            "DAI": "dai",
        }
    )
    poll_interval_s: float = Field(60.0, gt=0)
    max_age_s: float = Field(300.0, gt=0)

    @property
    def effective_base_url(self) -> str:
        """``base_url`` if set, otherwise the documented root for ``plan``."""
        if self.base_url is not None:
            return self.base_url
        if self.plan == "pro":
            return "https://pro-api.coingecko.com/api/v3"
        return "https://api.coingecko.com/api/v3"

    @model_validator(mode="after")
    def _key_for_paid_plans(self) -> CoinGeckoFeed:
        if self.plan != "public" and self.api_key is None:
            _raise_if([("api_key", f"required for plan '{self.plan}' (set COINGECKO_API_KEY)")])
        return self


class XFeed(_Section):
    """X API v2 recent search. ``queries`` maps a token symbol to its search query."""

    enabled: bool = False
    bearer_token: Secret = None
    base_url: HttpUrl = "https://api.x.com/2"
    queries: dict[TokenRef, str] = Field(
        default_factory=lambda: {"WETH": "(ETH OR ethereum) lang:en -is:retweet"}
    )
    accounts: list[str] = Field(default_factory=list)
    poll_interval_s: float = Field(300.0, gt=0)
    max_age_s: float = Field(1_800.0, gt=0)
    baseline_window_h: float = Field(24.0, gt=0)

    @model_validator(mode="after")
    def _token_when_enabled(self) -> XFeed:
        problems = []
        if self.enabled and self.bearer_token is None:
            problems.append(("bearer_token", "required when enabled (set X_BEARER_TOKEN)"))
        if self.enabled and not self.queries and not self.accounts:
            problems.append(("queries", "set at least one query or account when enabled"))
        _raise_if(problems)
        return self


class SentimentConfig(_Section):
    """Blend of X and CoinGecko sentiment per token; stale scores fall back to neutral."""

    x_weight: float = Field(0.7, ge=0, le=1)
    coingecko_weight: float = Field(0.3, ge=0, le=1)
    max_age_s: float = Field(1_800.0, gt=0)


class WhalesFeed(_Section):
    """Swaps and transfers of ``wallets``, decoded from one eth_getLogs per block."""

    enabled: bool = False
    wallets: list[Address] = Field(default_factory=list)
    max_blocks_per_query: int = Field(100, ge=1, le=10_000)

    @model_validator(mode="after")
    def _wallets_when_enabled(self) -> WhalesFeed:
        if self.enabled and not self.wallets:
            _raise_if([("wallets", "list at least one wallet address when enabled")])
        return self


class GasFeed(_Section):
    """eth_feeHistory oracle: reward percentiles over ``block_count`` blocks."""

    block_count: int = Field(20, ge=1, le=1024)
    percentiles: list[Annotated[int, Field(ge=0, le=100)]] = Field(
        default_factory=lambda: [10, 50, 90], min_length=1
    )
    max_age_s: float = Field(30.0, gt=0)


class FeedsConfig(_Section):
    simulated: bool = False
    oneinch: OneInchFeed = Field(default_factory=OneInchFeed)
    cex: CexFeed = Field(default_factory=CexFeed)
    coingecko: CoinGeckoFeed = Field(default_factory=CoinGeckoFeed)
    x: XFeed = Field(default_factory=XFeed)
    sentiment: SentimentConfig = Field(default_factory=SentimentConfig)
    whales: WhalesFeed = Field(default_factory=WhalesFeed)
    gas: GasFeed = Field(default_factory=GasFeed)


# --- alerts, metrics, store, logging ----------------------------------------------------------


class TelegramAlerts(_Section):
    """Bot API alerts to ``chat_id``; commands accepted only from ``allowed_chat_ids``."""

    enabled: bool = False
    bot_token: Secret = None
    chat_id: Annotated[int | None, BeforeValidator(_blank_to_none)] = None
    allowed_chat_ids: list[int] = Field(default_factory=list)
    commands_enabled: bool = True
    api_base_url: HttpUrl = "https://api.telegram.org"

    @model_validator(mode="after")
    def _token_when_enabled(self) -> TelegramAlerts:
        problems = []
        if self.enabled and self.bot_token is None:
            problems.append(("bot_token", "required when enabled (set TELEGRAM_BOT_TOKEN)"))
        if self.enabled and self.chat_id is None:
            problems.append(("chat_id", "required when enabled (set TELEGRAM_CHAT_ID)"))
        _raise_if(problems)
        return self


class DiscordAlerts(_Section):
    enabled: bool = False
    webhook_url: Secret = None
    username: str = "defi-agent"

    @field_validator("webhook_url")
    @classmethod
    def _https_webhook(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parts = urlsplit(value.get_secret_value())
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http(s) webhook URL")
        return value

    @model_validator(mode="after")
    def _url_when_enabled(self) -> DiscordAlerts:
        if self.enabled and self.webhook_url is None:
            _raise_if([("webhook_url", "required when enabled (set DISCORD_WEBHOOK_URL)")])
        return self


class ConsoleAlerts(_Section):
    enabled: bool = True


class AlertsConfig(_Section):
    min_level: LogLevel = "info"
    console: ConsoleAlerts = Field(default_factory=ConsoleAlerts)
    telegram: TelegramAlerts = Field(default_factory=TelegramAlerts)
    discord: DiscordAlerts = Field(default_factory=DiscordAlerts)


class MetricsConfig(_Section):
    """Prometheus /metrics and /health. Bound to loopback unless you say otherwise."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9108, ge=1, le=65_535)


class StoreConfig(_Section):
    """SQLAlchemy async URL. A relative SQLite path is relative to the config file."""

    url: str = DEFAULT_STORE_URL

    @field_validator("url")
    @classmethod
    def _async_url(cls, value: str, info: ValidationInfo) -> str:
        parts = urlsplit(value)
        if not parts.scheme or "://" not in value:
            raise ValueError("must be a SQLAlchemy URL like sqlite+aiosqlite:///./data/agent.db")
        if parts.scheme.startswith("sqlite"):
            db_path = value.split(":///", 1)[1] if ":///" in value else ""
            base_dir = (info.context or {}).get("base_dir")
            if db_path and not db_path.startswith("/") and db_path != ":memory:" and base_dir:
                db_path = str((Path(base_dir) / db_path).resolve())
                return f"{parts.scheme}:///{db_path}"
        return value


class LoggingConfig(_Section):
    level: LogLevel = "info"
    format: Literal["text", "json"] = "text"
    file: ConfigPath | None = None


# ---------------------------------------------------------------------------------------------


class AgentConfig(_Section):
    """The whole configuration. Build it with :meth:`load`."""

    chain: ChainConfig = Field(default_factory=ChainConfig)
    wallet: WalletConfig = Field(default_factory=WalletConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    risk: RiskConfig = Field(default_factory=RiskConfig)
    market: MarketConfig = Field(default_factory=MarketConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    strategies: StrategiesConfig = Field(default_factory=StrategiesConfig)
    feeds: FeedsConfig = Field(default_factory=FeedsConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    # Variables read from the .env file, kept out of os.environ and out of every dump.
    _dotenv: dict[str, SecretStr] = PrivateAttr(default_factory=dict)
    _environ: Mapping[str, str] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _sections_agree(self) -> AgentConfig:
        problems: list[tuple[str, str]] = []
        if self.execution.slippage_bps > self.risk.max_slippage_bps:
            problems.append(
                (
                    "execution.slippage_bps",
                    f"must be <= risk.max_slippage_bps ({self.risk.max_slippage_bps}) "
                    f"(got {self.execution.slippage_bps})",
                )
            )
        strategies = self.strategies
        if strategies.cex_dex.enabled and not (self.feeds.cex.enabled or self.feeds.simulated):
            problems.append(("strategies.cex_dex.enabled", "needs feeds.cex.enabled = true"))
        if (
            strategies.cex_dex.enabled
            and self.feeds.cex.enabled
            and strategies.cex_dex.exchange not in self.feeds.cex.exchanges
        ):
            problems.append(
                (
                    "strategies.cex_dex.exchange",
                    f"must be one of feeds.cex.exchanges {self.feeds.cex.exchanges}",
                )
            )
        if strategies.whale_follow.enabled and not (
            self.feeds.whales.enabled or self.feeds.simulated
        ):
            problems.append(
                ("strategies.whale_follow.enabled", "needs feeds.whales.enabled = true")
            )
        unwatched = set(strategies.whale_follow.wallets) - set(self.feeds.whales.wallets)
        if unwatched and self.feeds.whales.enabled:
            problems.append(
                ("strategies.whale_follow.wallets", "every wallet must be in feeds.whales.wallets")
            )
        for dex in strategies.arbitrage.dexes:
            if dex not in self.market.dexes:
                problems.append(("strategies.arbitrage.dexes", f"'{dex}' is not in market.dexes"))
        if self.execution.mode == "live" and self.chain.name == "devnet":
            problems.append(("execution.mode", "'live' needs a public chain, not the devnet"))
        _raise_if(problems)
        return self

    # --- loading --------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        path: Path | str,
        env_file: Path | str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> AgentConfig:
        """Read, expand and validate ``path``.

        ``env_file`` defaults to ``.env`` beside the config file when that exists. ``environ``
        defaults to ``os.environ`` (tests pass a dict). Real environment variables win over the
        ``.env`` file. Raises ``ConfigError`` listing every problem by its dotted path.
        """
        config_path = Path(path)
        if not config_path.is_file():
            raise ConfigError(
                f"config file {config_path} not found (create one with `defi-agent init`)"
            )
        try:
            raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_path}: invalid TOML: {exc}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{config_path}: cannot read: {exc}") from exc

        dotenv = _read_dotenv(config_path, env_file)
        process_env: Mapping[str, str] = os.environ if environ is None else environ
        lookup = {**dotenv, **process_env}
        return cls.from_mapping(
            raw,
            environ=lookup,
            base_dir=config_path.resolve().parent,
            source=str(config_path),
            dotenv=dotenv,
            process_env=environ,
        )

    @classmethod
    def from_mapping(
        cls,
        raw: Mapping[str, Any],
        environ: Mapping[str, str] | None = None,
        base_dir: Path | None = None,
        source: str = "config",
        dotenv: Mapping[str, str] | None = None,
        process_env: Mapping[str, str] | None = None,
    ) -> AgentConfig:
        """Validate an already-parsed TOML document (``${VAR}`` expanded from ``environ``)."""
        lookup: Mapping[str, str] = os.environ if environ is None else environ
        expansion_problems: dict[str, str] = {}
        expanded = _expand_tree(dict(raw), (), lookup, expansion_problems)
        expanded = _devnet_rpc_urls(expanded, base_dir, expansion_problems)
        context = {"base_dir": base_dir} if base_dir is not None else {}
        problems = dict(expansion_problems)
        config: AgentConfig | None = None
        try:
            config = cls.model_validate(expanded, context=context)
        except ValidationError as exc:
            for field_path, message in _describe_errors(exc):
                # A failed ${VAR} already explains the field; pydantic's view of it adds noise.
                if not any(field_path.startswith(p) for p in expansion_problems):
                    problems.setdefault(field_path, message)
        if problems or config is None:
            raise ConfigError(_format_problems(source, problems))
        config._dotenv = {k: SecretStr(v) for k, v in (dotenv or {}).items()}
        config._environ = process_env
        return config

    # --- secrets from the environment -----------------------------------------------------

    def env_value(self, name: str) -> SecretStr | None:
        """A variable from the real environment, else from the ``.env`` file, else None."""
        environ: Mapping[str, str] = os.environ if self._environ is None else self._environ
        if name in environ:
            return SecretStr(environ[name])
        return self._dotenv.get(name)

    def keystore_password(self) -> SecretStr | None:
        """The keystore password from ``wallet.password_env`` or ``wallet.password_file``.

        Returns None when neither is set (the CLI may then prompt, when interactive).
        """
        from_env = self.env_value(self.wallet.password_env)
        if from_env is not None and from_env.get_secret_value():
            return from_env
        if self.wallet.password_file is not None:
            try:
                text = self.wallet.password_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"wallet.password_file: cannot read {self.wallet.password_file}: {exc.strerror}"
                ) from exc
            return SecretStr(text.rstrip("\r\n"))
        return None

    # --- dumps ----------------------------------------------------------------------------

    def redacted_dump(self, fmt: Literal["toml", "json"] = "toml") -> str:
        """The effective configuration as TOML or JSON, with every secret as ``**********``
        and URLs stripped of credentials, paths and queries."""
        tree = _redact(self.model_dump(mode="python"))
        # RPC providers put API keys in the URL path or query: show only scheme, host and port.
        chain = tree["chain"]
        chain["rpc_urls"] = [redact_url(url) for url in self.chain.rpc_urls]
        for name in ("ws_url", "submit_rpc_url"):
            url = getattr(self.chain, name)
            chain[name] = None if url is None else redact_url(url)
        if fmt == "json":
            return json.dumps(tree, indent=2, default=str) + "\n"
        return _toml_dumps(tree)


# ---------------------------------------------------------------------------------------------
# ${VAR} expansion.

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}")


def _expand_tree(
    node: Any, path: tuple[str | int, ...], env: Mapping[str, str], problems: dict[str, str]
) -> Any:
    if isinstance(node, dict):
        return {k: _expand_tree(v, (*path, k), env, problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_tree(v, (*path, i), env, problems) for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:
        return _expand_string(node, _dotted(path), env, problems)
    return node


def _expand_string(text: str, where: str, env: Mapping[str, str], problems: dict[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, has_default, default = match.group(1).partition(":-")
        if not _ENV_NAME.fullmatch(name):
            # The body may hold a default value that is a secret: do not echo it.
            problems[where] = "malformed ${...} reference; use ${NAME} or ${NAME:-default}"
            return match.group(0)
        value = env.get(name)
        if value is None or (has_default and value == ""):
            if has_default:
                return default
            problems[where] = (
                f"environment variable {name} is not set "
                f"(set it, add it to .env, or write ${{{name}:-default}})"
            )
            return match.group(0)
        return value

    return _REFERENCE.sub(substitute, text)


def _devnet_rpc_urls(
    tree: dict[str, Any], base_dir: Path | None, problems: dict[str, str]
) -> dict[str, Any]:
    """For the devnet without ``rpc_urls``, take the URL from its deployment file: Anvil picks a
    free port on every start and ``defi-agent devnet up`` rewrites the file each time."""
    chain = tree.get("chain", {})
    if not isinstance(chain, dict) or "rpc_urls" in chain:
        return tree
    if chain.get("name", DEVNET_CHAIN) != DEVNET_CHAIN:
        return tree
    declared = chain.get("deployment_file")
    if isinstance(declared, str):
        path = Path(declared).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
    else:
        path = default_deployment_path()
    if not path.is_file():
        problems["chain.rpc_urls"] = (
            f"not set, and the devnet deployment file {path} does not exist yet "
            "(start the devnet with `defi-agent devnet up`, or set rpc_urls)"
        )
        return tree
    try:
        rpc_url = load_deployment(path).rpc_url
    except ConfigError as exc:
        problems["chain.rpc_urls"] = f"not set, and {str(exc).splitlines()[0]}"
        return tree
    if rpc_url is None:
        problems["chain.rpc_urls"] = f"not set, and {path} has no rpc_url"
        return tree
    return {**tree, "chain": {**chain, "rpc_urls": [rpc_url]}}


def _read_dotenv(config_path: Path, env_file: Path | str | None) -> dict[str, str]:
    if env_file is None:
        candidate = config_path.resolve().parent / ".env"
        if not candidate.is_file():
            return {}
        env_path = candidate
    else:
        env_path = Path(env_file)
        if not env_path.is_file():
            raise ConfigError(f"env file {env_path} not found")
    # interpolate=False: .env values are taken literally, never expanded from one another.
    values = dotenv_values(env_path, interpolate=False)
    return {k: v for k, v in values.items() if v is not None}


# ---------------------------------------------------------------------------------------------
# Error reporting.


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types inside Optional/Union/Annotated."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        found: list[Any] = []
        for arg in get_args(annotation):
            if arg is not type(None):
                found.extend(_unwrap(arg))
        return found
    return [annotation]


def _annotation_at(loc: tuple[str | int, ...]) -> Any | None:
    """The declared type at ``loc`` inside AgentConfig, or None when the path is unknown."""
    candidates: list[Any] = [AgentConfig]
    for part in loc:
        next_candidates: list[Any] = []
        for candidate in candidates:
            for concrete in _unwrap(candidate):
                origin = get_origin(concrete)
                if isinstance(concrete, type) and issubclass(concrete, BaseModel):
                    field = concrete.model_fields.get(str(part))
                    if field is not None:
                        next_candidates.append(field.annotation)
                elif origin in (list, tuple, set, frozenset) and isinstance(part, int):
                    next_candidates.extend(get_args(concrete)[:1])
                elif origin is dict:
                    next_candidates.extend(get_args(concrete)[1:2])
        if not next_candidates:
            return None
        candidates = next_candidates
    return candidates[0] if candidates else None


def _is_secret(annotation: Any) -> bool:
    if annotation is None:
        return False
    if annotation is SecretStr:
        return True
    return any(_is_secret(arg) for arg in get_args(annotation))


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    annotation = AgentConfig if not loc else _annotation_at(loc)
    for concrete in _unwrap(annotation):
        if isinstance(concrete, type) and issubclass(concrete, BaseModel):
            return concrete
    return None


def _describe_input(value: object, secret: bool) -> str:
    if secret or isinstance(value, (dict, list, SecretStr)):
        return ""
    if isinstance(value, str):
        shown = redact_url(value) if "://" in value else value
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return f" (got {shown!r})"
    if isinstance(value, (bool, int, float, Decimal)):
        return f" (got {value!r})" if not isinstance(value, Decimal) else f" (got {value})"
    return f" (got a {type(value).__name__})"


_MESSAGES: dict[str, str] = {
    "missing": "required, but not set",
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "decimal_parsing": "must be a decimal number",
    "decimal_type": "must be a decimal number",
    "finite_number": "must be a finite number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "path_type": "must be a file path",
}


def _number(value: object) -> str:
    # Bounds of float fields come back as 100.0; operators wrote 100.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _message_for(error: Mapping[str, Any]) -> str:
    kind = str(error["type"])
    ctx = error.get("ctx") or {}
    bounds = {
        "less_than_equal": ("<=", "le"),
        "less_than": ("<", "lt"),
        "greater_than_equal": (">=", "ge"),
        "greater_than": (">", "gt"),
    }
    if kind in bounds:
        symbol, key = bounds[kind]
        return f"must be {symbol} {_number(ctx.get(key))}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind == "enum":
        return f"must be one of {ctx.get('expected')}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} item(s)"
    if kind == "string_pattern_mismatch":
        return "must be lower-case letters, digits, '-' or '_'"
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    return _MESSAGES.get(kind, str(error["msg"]))


def _describe_errors(exc: ValidationError) -> list[tuple[str, str]]:
    described: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        ctx = error.get("ctx") or {}
        raised = ctx.get("error")
        if isinstance(raised, _FieldProblems):
            for field, message in raised.problems:
                described.append((_dotted((*loc, *field.split("."))), message))
            continue
        kind = error["type"]
        if kind == "extra_forbidden":
            # Never echo the value: a misspelt secret key would leak its secret here.
            parent = _model_at(loc[:-1])
            hint = ""
            if parent is not None:
                close = difflib.get_close_matches(str(loc[-1]), list(parent.model_fields), n=1)
                if close:
                    hint = f"; did you mean '{close[0]}'?"
            described.append((_dotted(loc), f"unknown key{hint}"))
            continue
        secret = _is_secret(_annotation_at(loc))
        message = _message_for(error)
        if kind != "missing" and "(got " not in message:
            message += _describe_input(error.get("input"), secret)
        described.append((_dotted(loc), message))
    return described


def _format_problems(source: str, problems: Mapping[str, str]) -> str:
    count = len(problems)
    header = f"{source}: {count} invalid setting{'s' if count != 1 else ''}:"
    return "\n".join([header, *(f"  {path}: {message}" for path, message in problems.items())])


# ---------------------------------------------------------------------------------------------
# Redaction and TOML output.


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


def _redact(node: Any) -> Any:
    if isinstance(node, SecretStr):
        return REDACTED
    if isinstance(node, dict):
        return {str(k): _redact(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_redact(v) for v in node]
    if isinstance(node, Path):
        return str(node)
    if isinstance(node, Enum):
        return node.value
    if isinstance(node, str) and "://" in node:
        return redact_url(node, hide_path=False)
    return node


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else json.dumps(str(value))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        items = (f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None)
        return "{ " + ", ".join(items) + " }"
    return json.dumps(str(value))


def _toml_dumps(tree: Mapping[str, Any]) -> str:
    lines: list[str] = []

    def table(prefix: str, node: Mapping[str, Any]) -> None:
        scalars = {k: v for k, v in node.items() if not isinstance(v, dict) and v is not None}
        tables = {k: v for k, v in node.items() if isinstance(v, dict)}
        if prefix and (scalars or not tables):
            lines.append(f"[{prefix}]")
        for key, value in scalars.items():
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        if prefix and (scalars or not tables):
            lines.append("")
        for key, value in tables.items():
            table(f"{prefix}.{_toml_key(key)}" if prefix else _toml_key(key), value)

    table("", tree)
    return "\n".join(lines).rstrip("\n") + "\n"


# ---------------------------------------------------------------------------------------------
# Templates for `defi-agent init`.

ENV_VARIABLES = (
    DEFAULT_PASSWORD_ENV,
    "ONEINCH_API_KEY",
    "COINGECKO_API_KEY",
    "X_BEARER_TOKEN",
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_CHAT_ID",
    "DISCORD_WEBHOOK_URL",
    "BINANCE_API_KEY",
    "BINANCE_API_SECRET",
)


def render_config_template(deployment_file: str = "anvil/deployments/devnet.json") -> str:
    """The annotated ``agent.toml`` written by ``defi-agent init``, set up for the devnet whose
    deployment file is ``deployment_file`` (relative to the config file, or absolute)."""
    template = resources.files("agent").joinpath("templates/agent.example.toml")
    text = template.read_text(encoding="utf-8")
    return text.replace("@DEPLOYMENT_FILE@", deployment_file)


def render_env_example() -> str:
    """The ``.env.example`` written by ``defi-agent init``: variable names, never values."""
    return resources.files("agent").joinpath("templates/env.example").read_text(encoding="utf-8")
