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
there (``redact_url``). The text side (expansion, error messages, redaction, TOML output) lives in
``agent.config.loading``; this module holds the schema.

Relative paths in the file are relative to the directory holding the config file.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

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
    EXPECTED_BLOCK_TIME_S,
    KNOWN_CHAIN_IDS,
    ChainAddresses,
    addresses_for,
)
from agent.config.loading import (
    ENV_NAME,
    describe_validation_errors,
    devnet_rpc_urls,
    expand_env_references,
    format_problems,
    raise_if,
    read_dotenv,
    toml_dumps,
)
from agent.errors import ConfigError
from agent.redaction import redact_tree, redact_url
from strategies.arbitrage import ArbitrageParams
from strategies.cex_dex import CexDexParams
from strategies.dca import DcaParams
from strategies.grid import GridParams
from strategies.orders import OrdersParams
from strategies.signal import SignalAction, SignalParams
from strategies.whale_follow import WhaleFollowParams

DEFAULT_PASSWORD_ENV = "DEFI_AGENT_KEYSTORE_PASSWORD"
DEFAULT_REPUTATION_PASSWORD_ENV = "DEFI_AGENT_REPUTATION_PASSWORD"
DEFAULT_STORE_URL = "sqlite+aiosqlite:///./data/agent.db"
_SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,31}")


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
    if not ENV_NAME.fullmatch(value):
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


def _repr_safe(value: Any) -> Any:
    """A field value as ``repr`` may show it: URLs without credentials, paths or queries (RPC
    providers put API keys there; a PostgreSQL URL carries its password)."""
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    if isinstance(value, list | tuple):
        return type(value)(_repr_safe(v) for v in value)
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        # repr() and str() of every section, nested in AgentConfig's, go through here.
        for name, value in super().__repr_args__():
            yield name, _repr_safe(value)


# ---------------------------------------------------------------------------------------------
# Sections.


class ChainLimits(_Section):
    """What the RPC provider accepts; every read stays within it. Defaults fit the common
    providers' free tiers; a refused log range is split and asked again anyway."""

    max_calls_per_batch: int = Field(100, ge=1, le=100_000)
    max_request_bytes: int = Field(2_000_000, ge=10_000, le=1_000_000_000)
    logs_max_block_range: int = Field(2_000, ge=1, le=10_000_000)
    logs_max_results: int = Field(10_000, ge=1, le=10_000_000)
    # 0 = no pacing (a local node); an HTTP 429 is retried with backoff either way
    requests_per_s: float = Field(0.0, ge=0, le=100_000)


class ChainConfig(_Section):
    """Which chain and how to reach it. ``rpc_urls`` are tried in order (failover)."""

    name: str = Field("devnet", pattern=r"^[a-z0-9][a-z0-9_-]*$")
    chain_id: int = Field(31337, gt=0)
    rpc_urls: list[RpcUrl] = Field(default_factory=lambda: ["http://127.0.0.1:8545"], min_length=1)
    ws_url: WsUrl | None = None
    submit_rpc_url: HttpUrl | None = None
    # How signed transactions leave: "public" (eth_sendRawTransaction on submit_rpc_url or the
    # first rpc_url), "protect" (a private RPC at submit_rpc_url; nonces held locally while a
    # transaction is pending there), "bundle" (arbitrage as bundles to relay_urls for the next
    # bundle_blocks blocks, relay requests signed with the reputation key). Default: "protect"
    # when submit_rpc_url is set, else "public".
    submission: Literal["public", "protect", "bundle"] | None = None
    relay_urls: list[HttpUrl] = Field(default_factory=list)
    bundle_blocks: int = Field(3, ge=1, le=25)
    reputation_keystore: ConfigPath | None = None
    reputation_password_env: EnvVarName = DEFAULT_REPUTATION_PASSWORD_ENV
    poll_interval_s: float = Field(1.0, gt=0, le=60)
    request_timeout_s: float = Field(10.0, gt=0, le=120)
    deployment_file: ConfigPath | None = None
    # Seconds between blocks; default: the registry's figure for a known chain, 12 for another,
    # none for the devnet (it mines on demand, so a quiet head is normal there).
    block_time_s: float | None = Field(None, gt=0, le=600)
    # No new head for this long = stalled (alert, /health degraded); default 3 block times.
    stall_after_s: float | None = Field(None, gt=0)
    limits: ChainLimits = Field(default_factory=ChainLimits)

    def head_stall_after_s(self) -> float | None:
        """Seconds without a new head that count as a stall, or None: not watched (devnet)."""
        if self.stall_after_s is not None:
            return self.stall_after_s
        block_time_s = self.block_time_s
        if block_time_s is None:
            if self.name == DEVNET_CHAIN:
                return None
            block_time_s = EXPECTED_BLOCK_TIME_S.get(self.name, 12.0)
        return 3 * max(block_time_s, self.poll_interval_s)

    @property
    def submission_mode(self) -> str:
        """``submission``, or its default: "protect" with a submit_rpc_url, else "public"."""
        if self.submission is not None:
            return self.submission
        return "protect" if self.submit_rpc_url is not None else "public"

    @model_validator(mode="after")
    def _submission_has_its_parts(self) -> ChainConfig:
        problems: list[tuple[str, str]] = []
        if self.submission == "protect" and self.submit_rpc_url is None:
            problems.append(
                ("submit_rpc_url", "needed for submission = 'protect' (the private RPC)")
            )
        if self.submission == "bundle":
            if not self.relay_urls:
                problems.append(("relay_urls", "needed for submission = 'bundle' (one or more)"))
            if self.reputation_keystore is None:
                problems.append(
                    (
                        "reputation_keystore",
                        "needed for submission = 'bundle': a keystore of its own for the key "
                        "that signs relay requests (never the trading key)",
                    )
                )
        raise_if(problems)
        return self

    @model_validator(mode="after")
    def _deployment_file_only_for_local_chains(self) -> ChainConfig:
        # Anyone can deploy contracts at a deployment file's addresses on a public chain:
        # trading them instead of the registry's would trade someone else's contracts.
        public = self.name in KNOWN_CHAIN_IDS and self.name != DEVNET_CHAIN
        if self.deployment_file is not None and public:
            message = (
                f"is only read for chain 'devnet'; {self.name} uses the registry's addresses "
                "(remove deployment_file)"
            )
            raise_if([("deployment_file", message)])
        return self

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
    # A token that reverts our transfers (blocklist, pause) is not traded for this long.
    refused_token_cooldown_s: float = Field(3_600.0, ge=0)
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
        raise_if(problems)
        return self


class MarketConfig(_Section):
    """Which pools the agent watches: pools between ``tokens`` on ``dexes`` are discovered."""

    tokens: list[TokenRef] = Field(
        default_factory=lambda: ["WETH", "USDC", "WBTC", "DAI"], min_length=2
    )
    dexes: list[DexName] = Field(default_factory=lambda: list(ALL_DEXES), min_length=1)
    v3_fee_tiers: list[FeeTier] = Field(default_factory=lambda: list(ALL_FEE_TIERS))
    multicall_batch_size: int = Field(500, ge=1, le=5000)
    # after the first load, pools advance by their logs (one eth_getLogs a block) rather than
    # being re-read; this many, in rotation, are also read each block to catch drift
    event_driven_pools: bool = True
    spot_check_pools: int = Field(16, ge=0, le=10_000)
    token_addresses: dict[str, Address] = Field(default_factory=dict)
    # V3 tick data is read for the prices within this many percent of the current one (the
    # window follows the price; a quote that would leave it is refused, not guessed)
    v3_tick_window_pct: float = Field(10.0, gt=0, lt=100)
    # the first load runs in the background: this many batches of pools in flight, each of
    # this many pools; a pool whose load failed is retried after a backoff up to the maximum
    first_load_concurrency: int = Field(4, ge=1, le=64)
    first_load_batch_pools: int = Field(1_000, ge=1, le=5_000)
    first_load_retry_max_s: float = Field(300.0, gt=0)
    first_load_progress_interval_s: float = Field(10.0, gt=0)
    # discovery keeps only pools holding at least this much liquidity in USD (0 keeps all),
    # measured again every recheck interval (pools that gained liquidity are added back)
    min_liquidity_usd: float = Field(0.0, ge=0)
    liquidity_recheck_interval_s: float = Field(3600.0, gt=0)


class EngineConfig(_Section):
    """The tick loop."""

    block_source: Literal["auto", "ws", "poll"] = "auto"
    strategy_timeout_s: float = Field(2.0, gt=0)
    max_in_flight_per_pair: int = Field(1, ge=1, le=16)
    # Under 10 s with closing included: the trade's signed tx is journaled either way.
    shutdown_grace_s: float = Field(6.0, gt=0, le=300)


# --- strategies ------------------------------------------------------------------------------


class StrategiesConfig(_Section):
    arbitrage: ArbitrageParams = Field(default_factory=ArbitrageParams)
    cex_dex: CexDexParams = Field(default_factory=CexDexParams)
    grid: GridParams = Field(default_factory=GridParams)
    dca: DcaParams = Field(default_factory=DcaParams)
    whale_follow: WhaleFollowParams = Field(default_factory=WhaleFollowParams)
    signal: SignalParams = Field(default_factory=SignalParams)
    orders: OrdersParams = Field(default_factory=OrdersParams)


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
            raise_if([("api_key", "required when enabled (set ONEINCH_API_KEY in .env)")])
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
    # exchange id -> origin replacing the exchange's API hosts, paths kept (a proxy; tests' fakes)
    api_urls: dict[str, HttpUrl] = Field(default_factory=dict)

    @field_validator("symbols")
    @classmethod
    def _ccxt_symbols(cls, symbols: list[str]) -> list[str]:
        for symbol in symbols:
            if symbol.count("/") != 1:
                raise ValueError(f"symbols must look like 'ETH/USDT' (got {symbol!r})")
        return symbols

    @model_validator(mode="after")
    def _credentials_for_listed_exchanges(self) -> CexFeed:
        raise_if(
            [
                (f"credentials.{name}", f"exchange not in exchanges {self.exchanges}")
                for name in self.credentials
                if name not in self.exchanges
            ]
            + [
                (f"api_urls.{name}", f"exchange not in exchanges {self.exchanges}")
                for name in self.api_urls
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
            raise_if([("api_key", f"required for plan '{self.plan}' (set COINGECKO_API_KEY)")])
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
        raise_if(problems)
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
            raise_if([("wallets", "list at least one wallet address when enabled")])
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
    """Bot API alerts to ``chat_id``. Commands are obeyed only from users in
    ``allowed_user_ids`` writing in chats of ``allowed_chat_ids`` (an allowlisted private chat,
    a positive id, is its user's own; in a group each user must be listed)."""

    enabled: bool = False
    bot_token: Secret = None
    chat_id: Annotated[int | None, BeforeValidator(_blank_to_none)] = None
    allowed_chat_ids: list[int] = Field(default_factory=list)
    allowed_user_ids: list[Annotated[int, Field(gt=0)]] = Field(default_factory=list)
    commands_enabled: bool = True
    api_base_url: HttpUrl = "https://api.telegram.org"

    @model_validator(mode="after")
    def _token_when_enabled(self) -> TelegramAlerts:
        problems = []
        if self.enabled and self.bot_token is None:
            problems.append(("bot_token", "required when enabled (set TELEGRAM_BOT_TOKEN)"))
        if self.enabled and self.chat_id is None:
            problems.append(("chat_id", "required when enabled (set TELEGRAM_CHAT_ID)"))
        raise_if(problems)
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
            raise_if([("webhook_url", "required when enabled (set DISCORD_WEBHOOK_URL)")])
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
    # Feed sources whose staleness turns /health degraded (default: every enabled feed).
    required_sources: list[str] | None = None


def _ip_network(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be an IP address or network, e.g. '10.0.0.5' or '10.0.0.0/24'")
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address or network (e.g. '10.0.0.5' or '10.0.0.0/24')"
        ) from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ConsoleConfig(_Section):
    """The operator console (HTTP API + dashboard), served by the agent on 127.0.0.1.

    Every request needs the bearer token: ``token`` (set it in .env as
    ``${DEFI_AGENT_CONSOLE_TOKEN}``), else the one generated into ``token_file`` (mode 0600) at
    first start. A non-loopback ``host`` needs ``allowed_ips``; loopback clients (an SSH tunnel)
    are always allowed.
    """

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(9110, ge=0, le=65_535)
    token: Secret = None
    # Relative to the config file, like the journal (validated, so the default is too).
    token_file: ConfigPath = Field(Path("data/console.token"), validate_default=True)
    allowed_ips: list[Annotated[str, BeforeValidator(_ip_network)]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _allowlist_off_loopback(self) -> ConsoleConfig:
        if not _is_loopback(self.host) and not self.allowed_ips:
            raise_if(
                [
                    (
                        "allowed_ips",
                        f"required when host is not a loopback address (got host {self.host!r}):"
                        " list the operators' IPs or networks, or use an SSH tunnel to 127.0.0.1",
                    )
                ]
            )
        if self.token is not None and len(self.token.get_secret_value()) < 16:
            raise_if([("token", "must be at least 16 characters (or leave it unset: generated)")])
        return self


_WEBHOOK_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


class WebhookConfig(_Section):
    """``[webhooks.<name>]``: a signal endpoint ``POST /webhooks/<name>`` on the console.

    ``secret`` (16+ characters, from .env: ``${WEBHOOK_TV_SECRET}``) authenticates it: with
    ``format = "json"`` the sender signs ``<unix time>.<body>`` with HMAC-SHA256 in an
    ``X-Signature: t=<unix>,v1=<hex>`` header; with ``format = "tradingview"`` (which cannot
    sign) the body carries ``passphrase`` = HMAC-SHA256(secret, ``tradingview:<name>``) plus a
    timestamp and a nonce. Requests older than ``max_age_s`` or reusing a nonce are refused;
    at most ``max_per_minute`` requests a minute. Signals may only ``actions`` the ``tokens``
    against ``quote`` (default ``strategies.signal.quote``), up to ``max_notional_usd`` each.
    """

    secret: SecretStr
    format: Literal["json", "tradingview"] = "json"
    actions: list[SignalAction] = Field(default_factory=lambda: list(get_args(SignalAction)))
    tokens: list[TokenRef] = Field(min_length=1)
    quote: TokenRef | None = None
    max_notional_usd: Usd
    max_per_minute: int = Field(10, ge=1, le=600)
    max_age_s: float = Field(60.0, gt=0, le=600)

    @field_validator("secret")
    @classmethod
    def _long_secret(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (e.g. `openssl rand -hex 32`)")
        return value

    @field_validator("actions")
    @classmethod
    def _some_actions(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must name at least one of 'buy', 'sell'")
        return value


def _webhook_names(value: dict[str, Any]) -> dict[str, Any]:
    for name in value:
        if not _WEBHOOK_NAME.fullmatch(name):
            raise ValueError(
                f"webhook name {name!r} must be 1-32 lower-case letters, digits, '_' or '-'"
            )
    return value


class StoreConfig(_Section):
    """SQLAlchemy async URL. A relative SQLite path is relative to the config file."""

    # validate_default: the default's relative path, too, is the config file's, not the cwd's.
    url: str = Field(DEFAULT_STORE_URL, validate_default=True)

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
    """Console log (stderr) and an optional rotating file, in plain text or JSON lines."""

    level: LogLevel = "info"
    format: Literal["text", "json"] = "text"
    file: ConfigPath | None = None
    file_max_mb: float = Field(10.0, gt=0)
    file_backups: int = Field(5, ge=0, le=100)
    # At INFO, one summary line per this many seconds of blocks (not one per block).
    summary_every_s: float = Field(60.0, gt=0)


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
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    webhooks: Annotated[dict[str, WebhookConfig], AfterValidator(_webhook_names)] = Field(
        default_factory=dict
    )
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
        missing = [
            setting
            for setting, on in (
                ("strategies.signal.enabled = true (it trades them)", strategies.signal.enabled),
                ("console.enabled = true (it serves them)", self.console.enabled),
            )
            if not on
        ]
        if self.webhooks and missing:
            problems.append(("webhooks", "need " + " and ".join(missing)))
        if self.chain.submission == "bundle":
            reputation = self.chain.reputation_keystore
            if reputation is not None and reputation.resolve() == self.wallet.keystore.resolve():
                problems.append(
                    ("chain.reputation_keystore", "must not be the trading key's wallet.keystore")
                )
            if self.chain.reputation_password_env == self.wallet.password_env:
                problems.append(
                    ("chain.reputation_password_env", "must differ from wallet.password_env")
                )
        if self.execution.mode == "live" and self.chain.name == "devnet":
            problems.append(("execution.mode", "'live' needs a public chain, not the devnet"))
        raise_if(problems)
        return self

    @model_validator(mode="after")
    def _market_tokens_known(self) -> AgentConfig:
        """On a public chain, every symbol in market.tokens is the registry's or declared in
        market.token_addresses (0x addresses always pass; decimals are checked on chain).
        Only a list the operator wrote is judged: the default names WBTC, which Base lacks."""
        if self.chain.deployment_file is not None or self.chain.name not in KNOWN_CHAIN_IDS:
            return self
        if "tokens" not in self.market.model_fields_set:
            return self
        registry = addresses_for(self.chain.name)
        declared = {symbol.upper() for symbol in self.market.token_addresses}
        unknown = [
            ref
            for ref in self.market.tokens
            if not ref.startswith("0x")
            and ref.upper() not in declared
            and registry.token(ref) is None
        ]
        if unknown:
            raise_if(
                [
                    (
                        "market.tokens",
                        f"unknown on {self.chain.name}: {', '.join(unknown)} (give a 0x address "
                        "or add it to [market.token_addresses])",
                    )
                ]
            )
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

        dotenv = read_dotenv(config_path, env_file)
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
        references: dict[str, str] = {}
        expanded = expand_env_references(dict(raw), lookup, expansion_problems, references)
        expanded = devnet_rpc_urls(expanded, base_dir, expansion_problems)
        context = {"base_dir": base_dir} if base_dir is not None else {}
        # An absent [store] is validated too, so the default journal lands beside the config.
        if isinstance(expanded, dict) and "store" not in expanded:
            expanded = {**expanded, "store": {}}
        problems = dict(expansion_problems)
        config: AgentConfig | None = None
        try:
            config = cls.model_validate(expanded, context=context)
        except ValidationError as exc:
            for field_path, message in describe_validation_errors(exc, cls, references):
                # A failed ${VAR} already explains the field; pydantic's view of it adds noise.
                if not any(_within(field_path, p) for p in expansion_problems):
                    problems.setdefault(field_path, message)
        if problems or config is None:
            raise ConfigError(format_problems(source, problems))
        config._dotenv = {k: SecretStr(v) for k, v in (dotenv or {}).items()}
        config._environ = process_env
        return config

    def chain_addresses(self) -> ChainAddresses:
        """Contract and token addresses for ``chain`` (the devnet's from its deployment file)."""
        return addresses_for(self.chain.name, self.chain.deployment_file)

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

    def reputation_password(self) -> SecretStr | None:
        """The reputation keystore's password from ``chain.reputation_password_env``."""
        value = self.env_value(self.chain.reputation_password_env)
        return value if value is not None and value.get_secret_value() else None

    # --- dumps ----------------------------------------------------------------------------

    def redacted_dump(self, fmt: Literal["toml", "json"] = "toml") -> str:
        """The effective configuration as TOML or JSON, with every secret as ``**********``
        and URLs stripped of credentials, paths and queries."""
        tree = redact_tree(self.model_dump(mode="python"))
        # RPC providers put API keys in the URL path or query: show only scheme, host and port.
        chain = tree["chain"]
        chain["rpc_urls"] = [redact_url(url) for url in self.chain.rpc_urls]
        chain["relay_urls"] = [redact_url(url) for url in self.chain.relay_urls]
        for name in ("ws_url", "submit_rpc_url"):
            url = getattr(self.chain, name)
            chain[name] = None if url is None else redact_url(url)
        if fmt == "json":
            return json.dumps(tree, indent=2, default=str) + "\n"
        return toml_dumps(tree)


def _within(field_path: str, ancestor: str) -> bool:
    """``risk.caps[0]`` is within ``risk.caps`` and ``risk``; ``risk.capsule`` is not."""
    return field_path == ancestor or field_path.startswith((f"{ancestor}.", f"{ancestor}["))


# ---------------------------------------------------------------------------------------------
# Templates for `defi-agent init`.


def render_config_template(deployment_file: str | None = None) -> str:
    """The annotated ``agent.toml`` written by ``defi-agent init``, set up for the devnet.

    ``deployment_file`` (relative to the config file, or absolute) names the devnet's
    deployment; without it the line stays commented out and the devnet's default file is read
    (``anvil/deployments/devnet.json``)."""
    template = resources.files("agent.config").joinpath("templates/agent.example.toml")
    text = template.read_text(encoding="utf-8")
    if deployment_file is None:
        return text.replace("@DEPLOYMENT_FILE@", "anvil/deployments/devnet.json")
    return text.replace(
        '# deployment_file = "@DEPLOYMENT_FILE@"', f'deployment_file = "{deployment_file}"'
    )


def render_env_example() -> str:
    """The ``.env.example`` written by ``defi-agent init``: variable names, never values."""
    return (
        resources.files("agent.config")
        .joinpath("templates/env.example")
        .read_text(encoding="utf-8")
    )
