"""Contract and token addresses per chain, plus the local devnet read from its deployment file.

Mainnet addresses were checked against Uniswap's deployment pages (docs.uniswap.org, v2
"V2 Deployment Addresses" and v3 "<chain> Deployments"), Sushi's SDK config
(``SUSHISWAP_V2_FACTORY_ADDRESS`` / ``SUSHISWAP_V2_ROUTER_ADDRESS``) and Circle's list of native
USDC contracts. Every address is EIP-55 checksummed; a DEX that is not deployed on a chain is an
explicit ``None``, never a missing key.

Two V3 routers exist and their ABIs differ: ``SwapRouter`` (periphery 1.0, ``deadline`` inside
the params struct) and ``SwapRouter02`` (swap-router-contracts, no deadline in the struct; the
deadline goes into ``multicall(uint256 deadline, bytes[])``). ``V3Dex.router`` and
``V3Dex.router_kind`` say which one the agent uses on a chain: SwapRouter where it exists (the
devnet, Ethereum, Arbitrum, Optimism, Polygon), SwapRouter02 elsewhere (Base has no SwapRouter).

Each DEX also carries its CREATE2 init-code hash (a V2 pair's, a V3 pool's): forks such as
SushiSwap compile their own pair, so its hash differs from Uniswap's, and anything that derives
a pair address or checks a callback's sender (the ArbExecutor) needs the DEX's own.

Tokens: the major tokens of each chain (WETH, native and bridged USDC, USDT, DAI, WBTC, ...),
by symbol. Bridged USDC is ``USDC.e`` (``USDbC`` on Base) so that it can sit beside native USDC.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from eth_utils import is_checksum_address, is_hex_address, to_checksum_address

from agent.chain.abi import (
    SUSHISWAP_V2_PAIR_INIT_CODE_HASH,
    UNISWAP_V2_PAIR_INIT_CODE_HASH,
    UNISWAP_V3_POOL_INIT_CODE_HASH,
)
from agent.errors import ConfigError
from agent.types import Token

MULTICALL3_ADDRESS = "0xcA11bde05977b3631167028862bE2a173976CA11"
# 1inch's AggregationRouterV6: the same address on every chain 1inch serves (CREATE3).
ONEINCH_ROUTER_V6 = "0x111111125421cA6dc452d289314280a0f8842A65"
DEVNET_CHAIN = "devnet"
# Anvil's default chain id; a devnet deployment file may say otherwise.
DEVNET_CHAIN_ID = 31337
_REPO_ROOT = Path(__file__).resolve().parents[2]

# The V3 router ABIs (see the module docstring).
RouterKind = Literal["swap_router", "swap_router02"]
SWAP_ROUTER: RouterKind = "swap_router"
SWAP_ROUTER02: RouterKind = "swap_router02"
DEFAULT_DEPLOYMENTS_DIR = _REPO_ROOT / "anvil" / "deployments"


@dataclass(frozen=True, slots=True)
class V2Dex:
    """A Uniswap-V2-style DEX: factory (getPair) and Router02 (swaps, getAmountsOut)."""

    name: str
    factory: str
    router02: str | None
    pair_init_code_hash: bytes = UNISWAP_V2_PAIR_INIT_CODE_HASH


@dataclass(frozen=True, slots=True)
class V3Dex:
    """A Uniswap-V3-style DEX. ``swap_router`` is periphery 1.0's SwapRouter (deadline in the
    params struct); ``swap_router02`` is SwapRouter02 (no deadline in the struct)."""

    name: str
    factory: str
    quoter_v2: str | None
    swap_router: str | None
    swap_router02: str | None
    position_manager: str | None
    pool_init_code_hash: bytes = UNISWAP_V3_POOL_INIT_CODE_HASH

    @property
    def router_kind(self) -> RouterKind | None:
        """Which router the agent swaps through: SwapRouter where deployed, else SwapRouter02."""
        if self.swap_router is not None:
            return SWAP_ROUTER
        return SWAP_ROUTER02 if self.swap_router02 is not None else None

    @property
    def router(self) -> str | None:
        """The address of the router :attr:`router_kind` names."""
        return self.swap_router if self.swap_router is not None else self.swap_router02


@dataclass(frozen=True, slots=True)
class DeployedPool:
    """A pool listed in a devnet deployment file. ``fee_pips``: 3000 = 0.3%."""

    dex: str
    kind: Literal["v2", "v3"]
    address: str
    token0: str
    token1: str
    fee_pips: int
    tick_spacing: int | None = None


@dataclass(frozen=True, slots=True)
class ChainAddresses:
    """Addresses the agent needs on one chain.

    ``wrapped_native`` is the ERC20 the routers wrap the gas token into (WETH, or WPOL on
    Polygon); ``weth`` is ETH as an ERC20 on that chain (bridged WETH on Polygon).
    """

    chain: str
    chain_id: int
    wrapped_native: str
    weth: str
    usdc: str
    multicall3: str
    uniswap_v2_factory: str | None
    uniswap_v2_router02: str | None
    uniswap_v3_factory: str | None
    uniswap_v3_quoter_v2: str | None
    uniswap_v3_swap_router: str | None
    uniswap_v3_swap_router02: str | None
    uniswap_v3_position_manager: str | None
    sushiswap_v2_factory: str | None
    sushiswap_v2_router02: str | None
    tokens: Mapping[str, Token] = field(default_factory=lambda: MappingProxyType({}))
    rpc_url: str | None = None
    pools: tuple[DeployedPool, ...] = ()
    # Every flat name -> address from a deployment file (e.g. "arb_executor" once deployed).
    extra: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # Pair init-code hash per V2 DEX name where it is not Uniswap's.
    v2_pair_init_code_hashes: Mapping[str, bytes] = field(
        default_factory=lambda: MappingProxyType({})
    )
    # The router 1inch's /swap transactions may call (the signing policy's allowlist).
    oneinch_router: str | None = None

    def v2_dexes(self) -> dict[str, V2Dex]:
        """The V2-style DEXes deployed on this chain, by the names config uses."""
        dexes: dict[str, V2Dex] = {}
        if self.uniswap_v2_factory is not None:
            dexes["uniswap_v2"] = V2Dex(
                "uniswap_v2", self.uniswap_v2_factory, self.uniswap_v2_router02
            )
        if self.sushiswap_v2_factory is not None:
            dexes["sushiswap"] = V2Dex(
                "sushiswap", self.sushiswap_v2_factory, self.sushiswap_v2_router02
            )
        return {
            name: V2Dex(
                dex.name,
                dex.factory,
                dex.router02,
                self.v2_pair_init_code_hashes.get(name, UNISWAP_V2_PAIR_INIT_CODE_HASH),
            )
            for name, dex in dexes.items()
        }

    def v3_dexes(self) -> dict[str, V3Dex]:
        """The V3-style DEXes deployed on this chain, by the names config uses."""
        if self.uniswap_v3_factory is None:
            return {}
        return {
            "uniswap_v3": V3Dex(
                "uniswap_v3",
                self.uniswap_v3_factory,
                self.uniswap_v3_quoter_v2,
                self.uniswap_v3_swap_router,
                self.uniswap_v3_swap_router02,
                self.uniswap_v3_position_manager,
            )
        }

    def role_addresses(self) -> dict[str, str]:
        """The DEX contracts as the flat "dex.role" map a deployment file uses
        ("uniswap_v2.router", "uniswap_v3.quoter_v2", ...)."""
        flat: dict[str, str] = {}
        for dex in self.v2_dexes().values():
            flat[f"{dex.name}.factory"] = dex.factory
            if dex.router02:
                flat[f"{dex.name}.router"] = dex.router02
        for v3 in self.v3_dexes().values():
            flat[f"{v3.name}.factory"] = v3.factory
            router = v3.router
            if router:
                flat[f"{v3.name}.swap_router"] = router
            if v3.quoter_v2:
                flat[f"{v3.name}.quoter_v2"] = v3.quoter_v2
        return flat

    def dex_names(self) -> list[str]:
        """Names of every DEX deployed on this chain ("uniswap_v2", "sushiswap", "uniswap_v3")."""
        return [*self.v2_dexes(), *self.v3_dexes()]

    def token(self, symbol_or_address: str) -> Token | None:
        """Look a known token up by symbol (case-insensitive) or by address."""
        wanted = symbol_or_address.upper()
        for symbol, token in self.tokens.items():
            if symbol.upper() == wanted or token.address.upper() == wanted:
                return token
        return None


def _tokens(*tokens: Token) -> Mapping[str, Token]:
    return MappingProxyType({t.symbol: t for t in tokens})


# Uniswap V3 core and periphery share these addresses on Ethereum, Arbitrum, Optimism, Polygon.
_V3_FACTORY = "0x1F98431c8aD98523631AE4a59f267346ea31F984"
_V3_QUOTER_V2 = "0x61fFE014bA17989E743c5F6cB21bF9697530B21e"
_V3_SWAP_ROUTER = "0xE592427A0AEce92De3Edee1F18E0157C05861564"
_V3_SWAP_ROUTER02 = "0x68b3465833fb72A70ecDF485E0e4C7bD8665Fc45"
_V3_POSITION_MANAGER = "0xC36442b4a4522E871399CD717aBDD847Ab11FE88"
# Sushi's V2 factory/router pair on most chains other than Ethereum, Base and Optimism.
_SUSHI_V2_FACTORY = "0xc35DADB65012eC5796536bD9864eD8773aBc74C4"
_SUSHI_V2_ROUTER02 = "0x1b02dA8Cb0d097eB8D57A175b88c7D8b47997506"
# Uniswap V2 Router02 deployed in 2023-24 on Arbitrum and Base (same address on both).
_UNI_V2_ROUTER02_L2 = "0x4752ba5DBc23f44D87826276BF6Fd6b1C372aD24"
# OP-stack predeploy WETH (Optimism, Base).
_OP_STACK_WETH = "0x4200000000000000000000000000000000000006"

_ETHEREUM = ChainAddresses(
    chain="ethereum",
    chain_id=1,
    wrapped_native="0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
    weth="0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
    usdc="0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
    multicall3=MULTICALL3_ADDRESS,
    uniswap_v2_factory="0x5C69bEe701ef814a2B6a3EDD4B1652CB9cc5aA6f",
    uniswap_v2_router02="0x7a250d5630B4cF539739dF2C5dAcb4c659F2488D",
    uniswap_v3_factory=_V3_FACTORY,
    uniswap_v3_quoter_v2=_V3_QUOTER_V2,
    uniswap_v3_swap_router=_V3_SWAP_ROUTER,
    uniswap_v3_swap_router02=_V3_SWAP_ROUTER02,
    uniswap_v3_position_manager=_V3_POSITION_MANAGER,
    sushiswap_v2_factory="0xC0AEe478e3658e2610c5F7A4A2E1777cE9e4f2Ac",
    sushiswap_v2_router02="0xd9e1cE17f2641f24aE83637ab66a2cca9C378B9F",
    oneinch_router=ONEINCH_ROUTER_V6,
    tokens=_tokens(
        Token("0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", "WETH", 18),
        Token("0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", "USDC", 6),
        Token("0xdAC17F958D2ee523a2206206994597C13D831ec7", "USDT", 6),
        Token("0x6B175474E89094C44Da98b954EedeAC495271d0F", "DAI", 18),
        Token("0x2260FAC5E5542a773Aa44fBCfeDf7C193bc2C599", "WBTC", 8),
    ),
    v2_pair_init_code_hashes=MappingProxyType({"sushiswap": SUSHISWAP_V2_PAIR_INIT_CODE_HASH}),
)

_ARBITRUM = ChainAddresses(
    chain="arbitrum",
    chain_id=42161,
    wrapped_native="0x82aF49447D8a07e3bd95BD0d56f35241523fBab1",
    weth="0x82aF49447D8a07e3bd95BD0d56f35241523fBab1",
    usdc="0xaf88d065e77c8cC2239327C5EDb3A432268e5831",
    multicall3=MULTICALL3_ADDRESS,
    uniswap_v2_factory="0xf1D7CC64Fb4452F05c498126312eBE29f30Fbcf9",
    uniswap_v2_router02=_UNI_V2_ROUTER02_L2,
    uniswap_v3_factory=_V3_FACTORY,
    uniswap_v3_quoter_v2=_V3_QUOTER_V2,
    uniswap_v3_swap_router=_V3_SWAP_ROUTER,
    uniswap_v3_swap_router02=_V3_SWAP_ROUTER02,
    uniswap_v3_position_manager=_V3_POSITION_MANAGER,
    sushiswap_v2_factory=_SUSHI_V2_FACTORY,
    sushiswap_v2_router02=_SUSHI_V2_ROUTER02,
    oneinch_router=ONEINCH_ROUTER_V6,
    tokens=_tokens(
        Token("0x82aF49447D8a07e3bd95BD0d56f35241523fBab1", "WETH", 18),
        Token("0xaf88d065e77c8cC2239327C5EDb3A432268e5831", "USDC", 6),
        Token("0xFF970A61A04b1cA14834A43f5dE4533eBDDB5CC8", "USDC.e", 6),
        Token("0xFd086bC7CD5C481DCC9C85ebE478A1C0b69FCbb9", "USDT", 6),
        Token("0xDA10009cBd5D07dd0CeCc66161FC93D7c9000da1", "DAI", 18),
        Token("0x2f2a2543B76A4166549F7aaB2e75Bef0aefC5B0f", "WBTC", 8),
        Token("0x912CE59144191C1204E64559FE8253a0e49E6548", "ARB", 18),
    ),
    v2_pair_init_code_hashes=MappingProxyType({"sushiswap": SUSHISWAP_V2_PAIR_INIT_CODE_HASH}),
)

_BASE = ChainAddresses(
    chain="base",
    chain_id=8453,
    wrapped_native=_OP_STACK_WETH,
    weth=_OP_STACK_WETH,
    usdc="0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
    multicall3=MULTICALL3_ADDRESS,
    uniswap_v2_factory="0x8909Dc15e40173Ff4699343b6eB8132c65e18eC6",
    uniswap_v2_router02=_UNI_V2_ROUTER02_L2,
    uniswap_v3_factory="0x33128a8fC17869897dcE68Ed026d694621f6FDfD",
    uniswap_v3_quoter_v2="0x3d4e44Eb1374240CE5F1B871ab261CD16335B76a",
    # Base never got periphery 1.0's SwapRouter; only SwapRouter02.
    uniswap_v3_swap_router=None,
    uniswap_v3_swap_router02="0x2626664c2603336E57B271c5C0b26F421741e481",
    uniswap_v3_position_manager="0x03a520b32C04BF3bEEf7BEb72E919cf822Ed34f1",
    sushiswap_v2_factory="0x71524B4f93c58fcbF659783284E38825f0622859",
    sushiswap_v2_router02="0x6BDED42c6DA8FBf0d2bA55B2fa120C5e0c8D7891",
    oneinch_router=ONEINCH_ROUTER_V6,
    tokens=_tokens(
        Token(_OP_STACK_WETH, "WETH", 18),
        Token("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "USDC", 6),
        # Bridged USDC from before native USDC; its own symbol on chain is USDbC.
        Token("0xd9aAEc86B65D86f6A7B5B1b0c42FFA531710b6CA", "USDbC", 6),
        Token("0x50c5725949A6F0c72E6C4a641F24049A917DB0Cb", "DAI", 18),
        Token("0xcbB7C0000aB88B473b1f5aFd9ef808440eed33Bf", "cbBTC", 8),
    ),
    v2_pair_init_code_hashes=MappingProxyType({"sushiswap": SUSHISWAP_V2_PAIR_INIT_CODE_HASH}),
)

_OPTIMISM = ChainAddresses(
    chain="optimism",
    chain_id=10,
    wrapped_native=_OP_STACK_WETH,
    weth=_OP_STACK_WETH,
    usdc="0x0b2C639c533813f4Aa9D7837CAf62653d097Ff85",
    multicall3=MULTICALL3_ADDRESS,
    uniswap_v2_factory="0x0c3c1c532F1e39EdF36BE9Fe0bE1410313E074Bf",
    uniswap_v2_router02="0x4A7b5Da61326A6379179b40d00F57E5bbDC962c2",
    uniswap_v3_factory=_V3_FACTORY,
    uniswap_v3_quoter_v2=_V3_QUOTER_V2,
    uniswap_v3_swap_router=_V3_SWAP_ROUTER,
    uniswap_v3_swap_router02=_V3_SWAP_ROUTER02,
    uniswap_v3_position_manager=_V3_POSITION_MANAGER,
    sushiswap_v2_factory="0xFbc12984689e5f15626Bad03Ad60160Fe98B303C",
    sushiswap_v2_router02="0x2ABf469074dc0b54d793850807E6eb5Faf2625b1",
    oneinch_router=ONEINCH_ROUTER_V6,
    tokens=_tokens(
        Token(_OP_STACK_WETH, "WETH", 18),
        Token("0x0b2C639c533813f4Aa9D7837CAf62653d097Ff85", "USDC", 6),
        Token("0x7F5c764cBc14f9669B88837ca1490cCa17c31607", "USDC.e", 6),
        Token("0x94b008aA00579c1307B0EF2c499aD98a8ce58e58", "USDT", 6),
        Token("0xDA10009cBd5D07dd0CeCc66161FC93D7c9000da1", "DAI", 18),
        Token("0x68f180fcCe6836688e9084f035309E29Bf0A2095", "WBTC", 8),
        Token("0x4200000000000000000000000000000000000042", "OP", 18),
    ),
    v2_pair_init_code_hashes=MappingProxyType({"sushiswap": SUSHISWAP_V2_PAIR_INIT_CODE_HASH}),
)

_POLYGON = ChainAddresses(
    chain="polygon",
    chain_id=137,
    # The gas token is POL (formerly MATIC); routers wrap it into WPOL (formerly WMATIC).
    wrapped_native="0x0d500B1d8E8eF31E21C99d1Db9A6444d3ADf1270",
    weth="0x7ceB23fD6bC0adD59E62ac25578270cFf1b9f619",
    usdc="0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359",
    multicall3=MULTICALL3_ADDRESS,
    uniswap_v2_factory="0x9e5A52f57b3038F1B8EeE45F28b3C1967e22799C",
    uniswap_v2_router02="0xedf6066a2b290C185783862C7F4776A2C8077AD1",
    uniswap_v3_factory=_V3_FACTORY,
    uniswap_v3_quoter_v2=_V3_QUOTER_V2,
    uniswap_v3_swap_router=_V3_SWAP_ROUTER,
    uniswap_v3_swap_router02=_V3_SWAP_ROUTER02,
    uniswap_v3_position_manager=_V3_POSITION_MANAGER,
    sushiswap_v2_factory=_SUSHI_V2_FACTORY,
    sushiswap_v2_router02=_SUSHI_V2_ROUTER02,
    oneinch_router=ONEINCH_ROUTER_V6,
    tokens=_tokens(
        Token("0x0d500B1d8E8eF31E21C99d1Db9A6444d3ADf1270", "WPOL", 18),
        Token("0x7ceB23fD6bC0adD59E62ac25578270cFf1b9f619", "WETH", 18),
        Token("0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359", "USDC", 6),
        Token("0x2791Bca1f2de4661ED88A30C99A7a9449Aa84174", "USDC.e", 6),
        Token("0xc2132D05D31c914a87C6611C10748AEb04B58e8F", "USDT", 6),
        Token("0x8f3Cf7ad23Cd3CaDbD9735AFf958023239c6A063", "DAI", 18),
        Token("0x1BFD67037B42Cf73acF2047067bd4F2C47D9BfD6", "WBTC", 8),
    ),
    v2_pair_init_code_hashes=MappingProxyType({"sushiswap": SUSHISWAP_V2_PAIR_INIT_CODE_HASH}),
)

_MAINNETS: Mapping[str, ChainAddresses] = MappingProxyType(
    {c.chain: c for c in (_ETHEREUM, _ARBITRUM, _BASE, _OPTIMISM, _POLYGON)}
)

# chain name -> chain id for the public chains the registry knows (config validates against it).
KNOWN_CHAIN_IDS: Mapping[str, int] = MappingProxyType(
    {name: c.chain_id for name, c in _MAINNETS.items()}
)


# Seconds between blocks on the public chains we know: how long a silent head is normal.
EXPECTED_BLOCK_TIME_S: Mapping[str, float] = MappingProxyType(
    {"ethereum": 12.0, "arbitrum": 0.25, "base": 2.0, "optimism": 2.0, "polygon": 2.0}
)


# Predeploys that price the L1 part of an L2 transaction.
OP_GAS_PRICE_ORACLE = "0x420000000000000000000000000000000000000F"
ARBITRUM_NODE_INTERFACE = "0x00000000000000000000000000000000000000C8"

GasModelKind = Literal["eip1559", "legacy", "arbitrum"]
L1FeeKind = Literal["none", "op_stack", "arbitrum"]


@dataclass(frozen=True, slots=True)
class GasModel:
    """How a chain prices L2 execution gas.

    ``eip1559``: the child block's base fee moves toward ``gas_limit / elasticity_multiplier``
    by at most ``1 / base_fee_max_change_denominator`` per block. ``legacy``: no base fee, one
    ``gasPrice`` per transaction (type 0). ``arbitrum``: ArbOS sets the base fee from a
    gas-pool backlog (speed limit), not from the parent block's fill, so the next base fee is
    taken as the current one (blocks come every ~250 ms and the fee moves slowly).
    """

    kind: GasModelKind = "eip1559"
    elasticity_multiplier: int = 2
    base_fee_max_change_denominator: int = 8
    # OP stack since Holocene: the header's extraData carries the current pair.
    params_in_extra_data: bool = False


@dataclass(frozen=True, slots=True)
class L1FeeModel:
    """How a chain charges for posting a transaction's bytes to L1.

    ``op_stack``: the GasPriceOracle predeploy (Fjord: ``getL1Fee(bytes unsignedTx)``, FastLZ
    size estimate; receipts carry ``l1Fee``). ``arbitrum``: the NodeInterface's
    ``gasEstimateComponents`` gives the L1 part in L2 gas units, already inside ``gasUsed``.
    """

    kind: L1FeeKind = "none"
    oracle: str | None = None


@dataclass(frozen=True, slots=True)
class ChainProfile:
    """Fee and timing behaviour of one chain (addresses live in :class:`ChainAddresses`)."""

    chain: str
    gas: GasModel
    l1_fee: L1FeeModel
    block_time_s: float


ETHEREUM_GAS = GasModel("eip1559", 2, 8)
# OP stack after Canyon: elasticity 6, denominator 250 (Bedrock had 50). Since Holocene the
# pair is a SystemConfig value, published in each block's extraData (read there when present).
OP_STACK_GAS = GasModel("eip1559", 6, 250, params_in_extra_data=True)
# Polygon PoS after the Delhi fork: denominator 16.
POLYGON_GAS = GasModel("eip1559", 2, 16)
LEGACY_GAS = GasModel("legacy")
OP_STACK_L1_FEE = L1FeeModel("op_stack", OP_GAS_PRICE_ORACLE)
NO_L1_FEE = L1FeeModel()

CHAIN_PROFILES: Mapping[str, ChainProfile] = MappingProxyType(
    {
        "ethereum": ChainProfile("ethereum", ETHEREUM_GAS, NO_L1_FEE, 12.0),
        "base": ChainProfile("base", OP_STACK_GAS, OP_STACK_L1_FEE, 2.0),
        "optimism": ChainProfile("optimism", OP_STACK_GAS, OP_STACK_L1_FEE, 2.0),
        "arbitrum": ChainProfile(
            "arbitrum",
            GasModel("arbitrum"),
            L1FeeModel("arbitrum", ARBITRUM_NODE_INTERFACE),
            0.25,
        ),
        "polygon": ChainProfile("polygon", POLYGON_GAS, NO_L1_FEE, 2.0),
        DEVNET_CHAIN: ChainProfile(DEVNET_CHAIN, ETHEREUM_GAS, NO_L1_FEE, 1.0),
    }
)


def chain_profile(chain: str) -> ChainProfile:
    """The fee/timing profile of ``chain`` (the devnet's for an unknown name)."""
    profile = CHAIN_PROFILES.get(chain)
    return profile if profile is not None else CHAIN_PROFILES[DEVNET_CHAIN]


def known_chains() -> list[str]:
    """Names accepted by :func:`addresses_for` without a deployment file, plus ``devnet``."""
    return [*_MAINNETS, DEVNET_CHAIN]


def chain_name_for_id(chain_id: int) -> str | None:
    """The registry's name for a public chain id, or None when it is not one we know."""
    for name, known_id in KNOWN_CHAIN_IDS.items():
        if known_id == chain_id:
            return name
    return None


def default_deployment_path(name: str = DEVNET_CHAIN) -> Path:
    """Where the devnet writes its deployment: ``anvil/deployments/<name>.json``."""
    return DEFAULT_DEPLOYMENTS_DIR / f"{name}.json"


def addresses_for(chain: str, deployment_path: Path | None = None) -> ChainAddresses:
    """Addresses for a public chain by name, or for a local deployment read from JSON.

    ``chain`` is one of :func:`known_chains`. A public chain uses the built-in addresses unless
    ``deployment_path`` is given (then that file wins, e.g. for a fork with our own contracts).
    ``devnet`` always reads a deployment file, by default ``anvil/deployments/devnet.json``.
    Raises ``ConfigError`` for an unknown chain, a missing deployment file or a malformed one.
    """
    key = chain.strip().lower()
    if key in _MAINNETS and deployment_path is None:
        return _MAINNETS[key]
    path = deployment_path if deployment_path is not None else default_deployment_path(key)
    if deployment_path is None and key != DEVNET_CHAIN:
        raise ConfigError(
            f"unknown chain {chain!r}: expected one of {', '.join(known_chains())}, "
            "or a deployment file for a local chain"
        )
    return load_deployment(path, chain=key)


def load_deployment(path: Path, chain: str = DEVNET_CHAIN) -> ChainAddresses:
    """Read a deployment JSON written by the devnet into :class:`ChainAddresses`.

    Format: ``{"chain_id", "rpc_url", "addresses": {flat name -> address},
    "tokens": {symbol: {"address", "decimals"}}, "pools": [...],
    "init_code_hashes": {V2 DEX name -> 0x pair init-code hash} (optional)}``.
    Flat names the agent uses:
    ``uniswap_v2.factory``, ``uniswap_v2.router``, ``sushiswap.factory``, ``sushiswap.router``,
    ``uniswap_v3.factory``, ``uniswap_v3.quoter_v2``, ``uniswap_v3.swap_router``,
    ``uniswap_v3.swap_router02``, ``uniswap_v3.position_manager``, ``multicall3``.
    """
    if not path.is_file():
        raise ConfigError(
            f"deployment file {path} not found: start the devnet first (`defi-agent devnet up`)"
        )
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"deployment file {path} is not readable JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"deployment file {path}: expected a JSON object at the top level")
    return _parse_deployment(raw, path, chain)


def _parse_deployment(raw: dict[str, Any], path: Path, chain: str) -> ChainAddresses:
    problems: list[str] = []

    def address(where: str, value: object) -> str | None:
        if not isinstance(value, str) or not is_hex_address(value):
            problems.append(f"{where}: expected a 0x-prefixed 20-byte hex address")
            return None
        if value != value.lower() and value != value.upper() and not is_checksum_address(value):
            problems.append(f"{where}: bad EIP-55 checksum ({value})")
            return None
        return str(to_checksum_address(value))

    chain_id = raw.get("chain_id", DEVNET_CHAIN_ID)
    if not isinstance(chain_id, int) or isinstance(chain_id, bool) or chain_id <= 0:
        problems.append("chain_id: expected a positive integer")
        chain_id = DEVNET_CHAIN_ID
    rpc_url = raw.get("rpc_url")
    if rpc_url is not None and not isinstance(rpc_url, str):
        problems.append("rpc_url: expected a string")
        rpc_url = None

    flat: dict[str, str] = {}
    raw_addresses = raw.get("addresses", {})
    if not isinstance(raw_addresses, dict):
        problems.append("addresses: expected an object of name -> address")
        raw_addresses = {}
    for name, value in raw_addresses.items():
        checked = address(f"addresses.{name}", value)
        if checked is not None:
            flat[str(name)] = checked

    tokens: dict[str, Token] = {}
    raw_tokens = raw.get("tokens", {})
    if not isinstance(raw_tokens, dict):
        problems.append("tokens: expected an object of symbol -> {address, decimals}")
        raw_tokens = {}
    for symbol, spec in raw_tokens.items():
        if not isinstance(spec, dict):
            problems.append(f"tokens.{symbol}: expected {{address, decimals}}")
            continue
        token_address = address(f"tokens.{symbol}.address", spec.get("address"))
        decimals = spec.get("decimals")
        if not isinstance(decimals, int) or isinstance(decimals, bool) or not 0 <= decimals <= 77:
            problems.append(f"tokens.{symbol}.decimals: expected an integer 0..77")
            continue
        if token_address is not None:
            tokens[str(symbol)] = Token(token_address, str(symbol), decimals)

    pools: list[DeployedPool] = []
    raw_pools = raw.get("pools", [])
    if not isinstance(raw_pools, list):
        problems.append("pools: expected a list")
        raw_pools = []
    for index, pool in enumerate(raw_pools):
        where = f"pools[{index}]"
        if not isinstance(pool, dict):
            problems.append(f"{where}: expected an object")
            continue
        kind = pool.get("kind")
        fee_pips = pool.get("fee_pips")
        tick_spacing = pool.get("tick_spacing")
        pool_address = address(f"{where}.address", pool.get("address"))
        token0 = address(f"{where}.token0", pool.get("token0"))
        token1 = address(f"{where}.token1", pool.get("token1"))
        if kind not in ("v2", "v3"):
            problems.append(f"{where}.kind: expected 'v2' or 'v3'")
            continue
        if not isinstance(fee_pips, int) or isinstance(fee_pips, bool) or fee_pips < 0:
            problems.append(f"{where}.fee_pips: expected a non-negative integer")
            continue
        if tick_spacing is not None and not isinstance(tick_spacing, int):
            problems.append(f"{where}.tick_spacing: expected an integer or null")
            continue
        if pool_address is None or token0 is None or token1 is None:
            continue
        pools.append(
            DeployedPool(
                dex=str(pool.get("dex", "")),
                kind=kind,
                address=pool_address,
                token0=token0,
                token1=token1,
                fee_pips=fee_pips,
                tick_spacing=tick_spacing,
            )
        )

    init_code_hashes: dict[str, bytes] = {}
    raw_hashes = raw.get("init_code_hashes", {})
    if not isinstance(raw_hashes, dict):
        problems.append("init_code_hashes: expected an object of V2 DEX name -> 0x hash")
        raw_hashes = {}
    for dex_name, value in raw_hashes.items():
        digits = value.removeprefix("0x") if isinstance(value, str) else ""
        if len(digits) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digits):
            problems.append(f"init_code_hashes.{dex_name}: expected 0x and 64 hex digits")
            continue
        init_code_hashes[str(dex_name)] = bytes.fromhex(digits)

    weth_token = tokens.get("WETH")
    weth = weth_token.address if weth_token is not None else flat.get("WETH")
    usdc_token = tokens.get("USDC")
    usdc = usdc_token.address if usdc_token is not None else flat.get("USDC")
    if weth is None:
        problems.append("tokens.WETH: missing (the devnet always deploys WETH9)")
    if usdc is None:
        problems.append("tokens.USDC: missing")
    if problems or weth is None or usdc is None:
        raise ConfigError(
            f"deployment file {path} is malformed:\n" + "\n".join(f"  {p}" for p in problems)
        )

    return ChainAddresses(
        chain=chain,
        chain_id=chain_id,
        wrapped_native=weth,
        weth=weth,
        usdc=usdc,
        multicall3=flat.get("multicall3", MULTICALL3_ADDRESS),
        uniswap_v2_factory=flat.get("uniswap_v2.factory"),
        uniswap_v2_router02=flat.get("uniswap_v2.router"),
        uniswap_v3_factory=flat.get("uniswap_v3.factory"),
        uniswap_v3_quoter_v2=flat.get("uniswap_v3.quoter_v2"),
        uniswap_v3_swap_router=flat.get("uniswap_v3.swap_router"),
        uniswap_v3_swap_router02=flat.get("uniswap_v3.swap_router02"),
        uniswap_v3_position_manager=flat.get("uniswap_v3.position_manager"),
        sushiswap_v2_factory=flat.get("sushiswap.factory"),
        sushiswap_v2_router02=flat.get("sushiswap.router"),
        tokens=MappingProxyType(tokens),
        rpc_url=rpc_url,
        pools=tuple(pools),
        extra=MappingProxyType(flat),
        v2_pair_init_code_hashes=MappingProxyType(init_code_hashes),
        oneinch_router=flat.get("oneinch.router"),
    )
