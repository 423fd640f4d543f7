"""Replicas of real chains: Anvil at the chain's id with the chain's contracts at their real
addresses, so the agent runs with ``chain.name = "ethereum"`` (or ``"base"``, ``"arbitrum"``),
the registry's addresses and no deployment file.

How each contract gets to its canonical address:

* Canonical CREATE: the contract's real deployer is impersonated (``anvil_impersonateAccount``),
  its nonce set to the nonce of the real deployment (``anvil_setNonce``) and the npm artifact
  deployed with the real constructor arguments, so the CREATE lands at the canonical address
  and the constructor runs there: immutables, NoDelegateCall's own address, fee tiers, owners
  are as on the real chain. The (deployer, nonce) pairs below are checked by a test against the
  addresses (``create_address``); they were found by searching each deployer's nonces for the
  address Uniswap's, Sushi's and the token issuers' deployment pages list.
* Copied construction (only where the real deployer is not known, i.e. Base's Uniswap V3 stack
  and V2 Router02, and Sushi's L2 deployments; and the chains' genesis-style WETH predeploys):
  the contract is constructed at a scratch address with the real arguments, then its runtime
  code, with the scratch address replaced by the canonical one (NoDelegateCall's immutable), and
  its storage are copied to the canonical address. Behaviour is the same; only the creation
  transaction differs from the real chain.
* Multicall3 is our own implementation (``contracts/Multicall3.sol``, the same interface) and
  WETH9 the build in ``@uniswap/v2-periphery``: both are created by the real deployer at the
  real nonce, but their bytecode is not byte-for-byte the mainnet one.
* Tokens are ours (``contracts/Replica*.sol``), installed with ``anvil_setCode`` at the real
  token's address and set up with ``initialize``: a USDT-like token (no return values,
  non-zero to non-zero approvals revert), a FiatToken-like USDC (balance packed with a blacklist
  bit in one slot), plain ERC20s with a blocklist at 6, 8 and 18 decimals, a fee-on-transfer
  token (PAXG, 2 bps) and a rebasing token (stETH-like shares). Only the replica's issuer,
  an address no one has a key for, can mint.

SushiSwap: its real pair's init-code hash (0xe18a34eb...c6303) is the hash of Sushi's own build,
which no npm package ships and which we may not recompile from Uniswap's sources. The replicas
put our own V2 fork (``ReplicaV2Factory``/``ReplicaV2Pair``/``ReplicaV2Router``, the same
interface, fee and amounts) at Sushi's addresses: its pair hash
(:data:`REPLICA_V2_PAIR_INIT_CODE_HASH`) differs from Uniswap's as Sushi's does, so anything
that assumes Uniswap's hash for every V2 DEX fails on a replica as it would on mainnet. The
registry records Sushi's real hash; :attr:`Replica.v2_pair_init_code_hashes` the replica's.

Liquidity: the first dev account provides it at realistic prices (ETH ~ 3,000 USD,
BTC ~ 60,000 USD) on both V2 DEXes and in V3 positions across several ranges; dev accounts 1-9
get 2M USD of every token and keep Anvil's 10,000 ETH.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from eth_abi import decode, encode
from eth_utils import keccak, to_checksum_address

from agent.chain.abi import calldata, calldata_hex, sort_tokens, v2_pair_address, v3_pool_address
from agent.chain.l1fee import OperatorFeeParams, OpL1FeeParams, fastlz_compressed_length
from agent.chain.registry import ChainAddresses, addresses_for, chain_profile
from agent.devnet import Devnet
from agent.devnet.deploy import (
    MAX_UINT256,
    V3_POSITIONS,
    Deployment,
    PoolInfo,
    _artifact,
    _creation_code,
    _execute,
    _Plan,
    _usd_to_units,
    create_address,
    plan_v3_pool,
)
from agent.devnet.jsonrpc import JsonRpc
from agent.devnet.node import DEV_ACCOUNTS, PROJECT_ROOT
from agent.errors import FatalError
from agent.types import Token

_NPM = PROJECT_ROOT / "anvil" / "node_modules" / "@uniswap"
_ABIS = PROJECT_ROOT / "abis"
_V3 = _NPM / "v3-core/artifacts/contracts"
_V3P = _NPM / "v3-periphery/artifacts/contracts"
WETH9_ARTIFACT = _NPM / "v2-periphery/build/WETH9.json"
V2_FACTORY_ARTIFACT = _NPM / "v2-core/build/UniswapV2Factory.json"
V2_ROUTER02_ARTIFACT = _NPM / "v2-periphery/build/UniswapV2Router02.json"
V3_FACTORY_ARTIFACT = _V3 / "UniswapV3Factory.sol/UniswapV3Factory.json"
SWAP_ROUTER_ARTIFACT = _V3P / "SwapRouter.sol/SwapRouter.json"
QUOTER_V2_ARTIFACT = _V3P / "lens/QuoterV2.sol/QuoterV2.json"
POSITION_MANAGER_ARTIFACT = _V3P / "NonfungiblePositionManager.sol/NonfungiblePositionManager.json"
SWAP_ROUTER02_ARTIFACT = (
    _NPM / "swap-router-contracts/artifacts/contracts/SwapRouter02.sol/SwapRouter02.json"
)
MULTICALL3_ARTIFACT = _ABIS / "Multicall3.json"
FORK_V2_FACTORY_ARTIFACT = _ABIS / "ReplicaV2Factory.json"
FORK_V2_ROUTER_ARTIFACT = _ABIS / "ReplicaV2Router.json"
GAS_PRICE_ORACLE_ARTIFACT = _ABIS / "ReplicaGasPriceOracle.json"
NODE_INTERFACE_ARTIFACT = _ABIS / "ReplicaNodeInterface.json"
# Base mainnet's L1 fee inputs (late 2025 scale): what the replica's oracle starts with.
BASE_L1_FEE_PARAMS = OpL1FeeParams(
    l1_base_fee_wei=2 * 10**9,
    blob_base_fee_wei=1,
    base_fee_scalar=2_269,
    blob_base_fee_scalar=1_055_762,
)


@dataclass(frozen=True, slots=True)
class ArbitrumL1FeeParams:
    """The replica NodeInterface's inputs (``contracts/ReplicaNodeInterface.sol``): ArbOS's L1
    price per calldata unit (``l1BaseFeeEstimate``, wei) and the L2 base fee floor (wei)."""

    l1_price_per_unit_wei: int
    min_base_fee_wei: int


# Arbitrum One's scale (late 2025): L1 data priced at ~0.1 gwei per unit since blobs, and
# ArbOS's 0.01 gwei floor under the L2 base fee.
# Base since Isthmus: the operator fee exists and is zero.
BASE_OPERATOR_FEE = OperatorFeeParams()
ARBITRUM_L1_FEE_PARAMS = ArbitrumL1FeeParams(l1_price_per_unit_wei=10**8, min_base_fee_wei=10**7)
_TOKEN_ARTIFACTS = {
    "fiat": _ABIS / "ReplicaFiatToken.json",
    "tether": _ABIS / "ReplicaTetherToken.json",
    "erc20": _ABIS / "ReplicaERC20.json",
    "rebasing": _ABIS / "ReplicaRebasingToken.json",
}

# keccak256 of ReplicaV2Pair's creation code: the pair hash of the V2 fork at Sushi's addresses.
REPLICA_V2_PAIR_INIT_CODE_HASH = keccak(
    _creation_code(_artifact(_ABIS / "ReplicaV2Pair.json"))
    if (_ABIS / "ReplicaV2Pair.json").is_file()
    else b""
)

# Mints the replica's tokens; nobody holds its key (it is only ever impersonated).
TOKEN_ISSUER = to_checksum_address(keccak(b"defi-agent replica token issuer")[12:])
# Constructs what is copied to canonical addresses; also keyless.
SCRATCH_DEPLOYER = to_checksum_address(keccak(b"defi-agent replica scratch deployer")[12:])
LIQUIDITY_PROVIDER = DEV_ACCOUNTS[0][0]
FUNDED_ACCOUNTS = tuple(account for account, _key in DEV_ACCOUNTS[1:])
FUNDING_USD = Fraction(2_000_000)
_FAR_DEADLINE = 2**48
_MAX_TICK = 887272
_ZERO = "0x" + "00" * 20

# Real deployers (EOA, nonce) of the canonical CREATE deployments the replicas reproduce.
UNISWAP_V2_DEPLOYER = "0x9C33eaCc2F50E39940D3AfaF2c7B8246B681A374"
UNISWAP_V3_DEPLOYER = "0x6C9FC64A53c1b71FB3f9Af64d1ae3A4931A5f4E9"
MULTICALL3_DEPLOYER = "0x05f32B3cC3888453ff71B01135B34FF8e41263F2"
WETH9_DEPLOYER = "0x4F26FfBe5F04ED43630fdC30A87638d53D0b0876"
SUSHISWAP_DEPLOYER = "0xF942Dba4159CB61F8AD88ca4A83f5204e8F4A6bd"
# NonfungibleTokenPositionDescriptor's proxy on Ethereum: only tokenURI() reads it.
_ETHEREUM_POSITION_DESCRIPTOR = "0xEe6A57eC80ea46401049E92587E52f5Ec1c24785"


@dataclass(frozen=True, slots=True)
class ContractPlacement:
    """One contract at its canonical address. ``args`` are (ABI type, value) where a value
    ``"@key"`` is the address placed under ``key``. ``deployer``/``nonce`` give the real CREATE;
    without them the contract is constructed elsewhere and copied (see the module docstring)."""

    key: str
    address: str
    artifact: Path
    args: tuple[tuple[str, str], ...] = ()
    deployer: str | None = None
    nonce: int | None = None
    gas: int = 12_000_000


TokenKind = Literal["weth", "fiat", "tether", "erc20", "rebasing"]


@dataclass(frozen=True, slots=True)
class TokenPlacement:
    """A token at its real address; ``weth`` is placed among the contracts."""

    symbol: str
    name: str
    kind: TokenKind
    decimals: int
    price_usd: Fraction
    address: str | None = None  # None: the registry's address for ``symbol``
    transfer_fee_bps: int = 0


@dataclass(frozen=True, slots=True)
class ReplicaProfile:
    """What one replica carries. Pools: (dex, token a, token b, USD per side) for V2 and
    (token a, token b, fee pips, USD per side) for Uniswap V3."""

    chain: str
    contracts: tuple[ContractPlacement, ...]
    tokens: tuple[TokenPlacement, ...]
    v2_pools: tuple[tuple[str, str, str, int], ...]
    v3_pools: tuple[tuple[str, str, int, int], ...]

    @property
    def registry(self) -> ChainAddresses:
        return addresses_for(self.chain)

    @property
    def chain_id(self) -> int:
        return self.registry.chain_id

    def token_address(self, token: TokenPlacement) -> str:
        if token.address is not None:
            return token.address
        known = self.registry.token(token.symbol)
        if known is None:
            raise FatalError(f"replica {self.chain}: the registry has no {token.symbol}")
        return known.address


def _required(value: str | None, what: str) -> str:
    if value is None:
        raise FatalError(f"the registry has no {what}")
    return value


def _uniswap_v3(
    reg: ChainAddresses, *, canonical: bool, descriptor: str = _ZERO
) -> tuple[ContractPlacement, ...]:
    """The Uniswap V3 stack: by the real deployer's nonces where ``canonical`` (the addresses
    Ethereum, Arbitrum, Optimism and Polygon share), else copied (Base)."""
    v3 = reg.v3_dexes()["uniswap_v3"]
    deployer = UNISWAP_V3_DEPLOYER if canonical else None
    periphery = (("address", "@uniswap_v3.factory"), ("address", "@WETH"))
    placements = [
        ContractPlacement(
            "uniswap_v3.factory",
            v3.factory,
            V3_FACTORY_ARTIFACT,
            deployer=deployer,
            nonce=0 if canonical else None,
        )
    ]
    if v3.swap_router is not None:
        placements.append(
            ContractPlacement(
                "uniswap_v3.swap_router",
                v3.swap_router,
                SWAP_ROUTER_ARTIFACT,
                periphery,
                deployer,
                4 if canonical else None,
            )
        )
    placements += [
        ContractPlacement(
            "uniswap_v3.position_manager",
            _required(v3.position_manager, "V3 position manager"),
            POSITION_MANAGER_ARTIFACT,
            (*periphery, ("address", descriptor)),
            deployer,
            8 if canonical else None,
        ),
        ContractPlacement(
            "uniswap_v3.quoter_v2",
            _required(v3.quoter_v2, "QuoterV2"),
            QUOTER_V2_ARTIFACT,
            periphery,
            deployer,
            13 if canonical else None,
        ),
        ContractPlacement(
            "uniswap_v3.swap_router02",
            _required(v3.swap_router02, "SwapRouter02"),
            SWAP_ROUTER02_ARTIFACT,
            (
                ("address", "@uniswap_v2.factory"),
                ("address", "@uniswap_v3.factory"),
                ("address", "@uniswap_v3.position_manager"),
                ("address", "@WETH"),
            ),
            deployer,
            14 if canonical else None,
        ),
    ]
    return tuple(placements)


def _v2_stacks(
    reg: ChainAddresses,
    *,
    uniswap_factory_nonce: int,
    uniswap_router_nonce: int | None,
    sushi_nonces: tuple[int, int] | None,
) -> tuple[ContractPlacement, ...]:
    dexes = reg.v2_dexes()
    uni, sushi = dexes["uniswap_v2"], dexes["sushiswap"]
    return (
        ContractPlacement(
            "uniswap_v2.factory",
            uni.factory,
            V2_FACTORY_ARTIFACT,
            (("address", UNISWAP_V2_DEPLOYER),),
            UNISWAP_V2_DEPLOYER,
            uniswap_factory_nonce,
            gas=6_000_000,
        ),
        ContractPlacement(
            "uniswap_v2.router",
            _required(uni.router02, "Uniswap V2 Router02"),
            V2_ROUTER02_ARTIFACT,
            (("address", "@uniswap_v2.factory"), ("address", "@WETH")),
            UNISWAP_V2_DEPLOYER if uniswap_router_nonce is not None else None,
            uniswap_router_nonce,
        ),
        ContractPlacement(
            "sushiswap.factory",
            sushi.factory,
            FORK_V2_FACTORY_ARTIFACT,
            (("address", SUSHISWAP_DEPLOYER),),
            SUSHISWAP_DEPLOYER if sushi_nonces else None,
            sushi_nonces[0] if sushi_nonces else None,
        ),
        ContractPlacement(
            "sushiswap.router",
            _required(sushi.router02, "SushiSwap router"),
            FORK_V2_ROUTER_ARTIFACT,
            (("address", "@sushiswap.factory"), ("address", "@WETH")),
            SUSHISWAP_DEPLOYER if sushi_nonces else None,
            sushi_nonces[1] if sushi_nonces else None,
        ),
    )


def _common(reg: ChainAddresses, weth: ContractPlacement) -> tuple[ContractPlacement, ...]:
    multicall = ContractPlacement(
        "multicall3", reg.multicall3, MULTICALL3_ARTIFACT, (), MULTICALL3_DEPLOYER, 0
    )
    return (multicall, weth)


def _ethereum() -> ReplicaProfile:
    reg = addresses_for("ethereum")
    weth = ContractPlacement("WETH", reg.weth, WETH9_ARTIFACT, (), WETH9_DEPLOYER, 446)
    return ReplicaProfile(
        chain="ethereum",
        contracts=(
            *_common(reg, weth),
            *_v2_stacks(
                reg, uniswap_factory_nonce=0, uniswap_router_nonce=3, sushi_nonces=(58, 59)
            ),
            *_uniswap_v3(reg, canonical=True, descriptor=_ETHEREUM_POSITION_DESCRIPTOR),
        ),
        tokens=(
            TokenPlacement("WETH", "Wrapped Ether", "weth", 18, Fraction(3_000)),
            TokenPlacement("USDC", "USD Coin", "fiat", 6, Fraction(1)),
            TokenPlacement("USDT", "Tether USD", "tether", 6, Fraction(1)),
            TokenPlacement("WBTC", "Wrapped BTC", "erc20", 8, Fraction(60_000)),
            TokenPlacement("DAI", "Dai Stablecoin", "erc20", 18, Fraction(1)),
            TokenPlacement(
                "PAXG",
                "Paxos Gold",
                "erc20",
                18,
                Fraction(2_000),
                "0x45804880De22913dAFE09f4980848ECE6EcbAf78",
                transfer_fee_bps=2,
            ),
            TokenPlacement(
                "stETH",
                "Liquid staked Ether 2.0",
                "rebasing",
                18,
                Fraction(3_000),
                "0xae7ab96520DE3A18E5e111B5EaAb095312D7fE84",
            ),
        ),
        v2_pools=(
            ("uniswap_v2", "WETH", "USDC", 5_000_000),
            ("uniswap_v2", "WETH", "USDT", 5_000_000),
            ("uniswap_v2", "WBTC", "WETH", 3_000_000),
            ("uniswap_v2", "DAI", "WETH", 2_000_000),
            ("uniswap_v2", "USDC", "USDT", 2_000_000),
            ("uniswap_v2", "PAXG", "WETH", 1_000_000),
            ("uniswap_v2", "stETH", "WETH", 2_000_000),
            ("sushiswap", "WETH", "USDC", 2_000_000),
            ("sushiswap", "WETH", "USDT", 2_000_000),
            ("sushiswap", "WBTC", "WETH", 1_000_000),
            ("sushiswap", "DAI", "WETH", 1_000_000),
        ),
        v3_pools=(
            ("WETH", "USDC", 500, 20_000_000),
            ("WETH", "USDC", 3000, 8_000_000),
            ("WETH", "USDT", 500, 8_000_000),
            ("WETH", "USDT", 3000, 4_000_000),
            ("WBTC", "WETH", 500, 8_000_000),
            ("WBTC", "WETH", 3000, 4_000_000),
            ("WBTC", "USDC", 3000, 4_000_000),
            ("WBTC", "USDT", 3000, 3_000_000),
            ("USDC", "USDT", 100, 10_000_000),
            ("DAI", "USDC", 100, 5_000_000),
            ("WETH", "DAI", 3000, 3_000_000),
        ),
    )


def _base() -> ReplicaProfile:
    reg = addresses_for("base")
    # Base's WETH is an OP-stack predeploy (genesis): copied, like every Base contract whose
    # real deployer we could not confirm.
    weth = ContractPlacement("WETH", reg.weth, WETH9_ARTIFACT)
    return ReplicaProfile(
        chain="base",
        contracts=(
            *_common(reg, weth),
            *_v2_stacks(reg, uniswap_factory_nonce=6, uniswap_router_nonce=None, sushi_nonces=None),
            *_uniswap_v3(reg, canonical=False),
        ),
        tokens=(
            TokenPlacement("WETH", "Wrapped Ether", "weth", 18, Fraction(3_000)),
            TokenPlacement("USDC", "USD Coin", "fiat", 6, Fraction(1)),
            TokenPlacement("USDbC", "USD Base Coin", "erc20", 6, Fraction(1)),
            TokenPlacement("DAI", "Dai Stablecoin", "erc20", 18, Fraction(1)),
            TokenPlacement("cbBTC", "Coinbase Wrapped BTC", "erc20", 8, Fraction(60_000)),
        ),
        v2_pools=(
            ("uniswap_v2", "WETH", "USDC", 3_000_000),
            ("sushiswap", "WETH", "USDC", 1_000_000),
        ),
        v3_pools=(
            ("WETH", "USDC", 500, 20_000_000),
            ("WETH", "USDC", 3000, 5_000_000),
            ("cbBTC", "WETH", 500, 5_000_000),
            ("cbBTC", "USDC", 3000, 3_000_000),
            ("USDC", "USDbC", 100, 5_000_000),
            ("WETH", "DAI", 3000, 2_000_000),
        ),
    )


def _arbitrum() -> ReplicaProfile:
    reg = addresses_for("arbitrum")
    weth = ContractPlacement("WETH", reg.weth, WETH9_ARTIFACT)
    return ReplicaProfile(
        chain="arbitrum",
        contracts=(
            *_common(reg, weth),
            *_v2_stacks(reg, uniswap_factory_nonce=5, uniswap_router_nonce=None, sushi_nonces=None),
            *_uniswap_v3(reg, canonical=True),
        ),
        tokens=(
            TokenPlacement("WETH", "Wrapped Ether", "weth", 18, Fraction(3_000)),
            TokenPlacement("USDC", "USD Coin", "fiat", 6, Fraction(1)),
            TokenPlacement("USDC.e", "Bridged USDC", "erc20", 6, Fraction(1)),
            TokenPlacement("USDT", "USD₮0", "erc20", 6, Fraction(1)),
            TokenPlacement("DAI", "Dai Stablecoin", "erc20", 18, Fraction(1)),
            TokenPlacement("WBTC", "Wrapped BTC", "erc20", 8, Fraction(60_000)),
            TokenPlacement("ARB", "Arbitrum", "erc20", 18, Fraction(1)),
        ),
        v2_pools=(
            ("uniswap_v2", "WETH", "USDC", 2_000_000),
            ("sushiswap", "WETH", "USDC", 1_000_000),
            ("sushiswap", "WETH", "USDC.e", 1_000_000),
        ),
        v3_pools=(
            ("WETH", "USDC", 500, 20_000_000),
            ("WETH", "USDC", 3000, 4_000_000),
            ("WETH", "USDC.e", 500, 4_000_000),
            ("WETH", "USDT", 500, 4_000_000),
            ("WBTC", "WETH", 500, 5_000_000),
            ("ARB", "WETH", 3000, 2_000_000),
            ("USDC", "USDC.e", 100, 5_000_000),
        ),
    )


PROFILES = {"ethereum": _ethereum, "base": _base, "arbitrum": _arbitrum}


def replica_profile(chain: str) -> ReplicaProfile:
    """The replica profile of ``chain`` ("ethereum", "base", "arbitrum")."""
    build = PROFILES.get(chain)
    if build is None:
        raise FatalError(f"no replica profile {chain!r}: expected one of {', '.join(PROFILES)}")
    return build()


def replica_source_files() -> list[Path]:
    """Everything a replica's deployment is built from (for saved-state keys)."""
    return [
        Path(__file__),
        Path(__file__).parent / "deploy.py",
        PROJECT_ROOT / "agent" / "chain" / "registry.py",
        PROJECT_ROOT / "anvil" / "package-lock.json",
        MULTICALL3_ARTIFACT,
        FORK_V2_FACTORY_ARTIFACT,
        FORK_V2_ROUTER_ARTIFACT,
        GAS_PRICE_ORACLE_ARTIFACT,
        NODE_INTERFACE_ARTIFACT,
        *_TOKEN_ARTIFACTS.values(),
    ]


# ---------------------------------------------------------------------------------------------
# Deployment


async def _send(rpc: JsonRpc, sender: str, to: str | None, data: bytes, gas: int) -> dict[str, Any]:
    """One transaction from an unlocked or impersonated ``sender``, mined; its receipt."""
    tx: dict[str, str] = {"from": sender, "data": "0x" + data.hex(), "gas": hex(gas)}
    if to is not None:
        tx["to"] = to
    tx_hash = await rpc.call("eth_sendTransaction", [tx])
    receipt: dict[str, Any] | None = await rpc.call("eth_getTransactionReceipt", [tx_hash])
    while receipt is None:  # automine answers before the block is stored
        receipt = await rpc.call("eth_getTransactionReceipt", [tx_hash])
    if int(receipt["status"], 16) != 1:
        raise FatalError(f"replica deployment: transaction {tx_hash} from {sender} reverted")
    return receipt


async def _impersonate(rpc: JsonRpc, account: str) -> None:
    await rpc.call("anvil_impersonateAccount", [account])
    await rpc.call("anvil_setBalance", [account, hex(10**24)])


async def _dumped_storage(rpc: JsonRpc, address: str) -> dict[str, str]:
    """``address``'s storage slots from ``anvil_dumpState`` (the only way to list them)."""
    state_hex: str = await rpc.call("anvil_dumpState")
    state = json.loads(gzip.decompress(bytes.fromhex(state_hex.removeprefix("0x"))))
    accounts = {k.lower(): v for k, v in state["accounts"].items()}
    storage: dict[str, str] = accounts.get(address.lower(), {}).get("storage", {})
    return storage


async def _place_contract(
    rpc: JsonRpc, placement: ContractPlacement, addresses: dict[str, str]
) -> None:
    types = [t for t, _ in placement.args]
    values = [addresses[v[1:]] if v.startswith("@") else v for _, v in placement.args]
    creation = _creation_code(_artifact(placement.artifact)) + encode(types, values)
    if placement.deployer is not None and placement.nonce is not None:
        expected = create_address(placement.deployer, placement.nonce)
        if expected != placement.address:
            raise FatalError(
                f"{placement.key}: {placement.deployer} at nonce {placement.nonce} creates "
                f"{expected}, not {placement.address}"
            )
        await _impersonate(rpc, placement.deployer)
        await rpc.call("anvil_setNonce", [placement.deployer, hex(placement.nonce)])
        receipt = await _send(rpc, placement.deployer, None, creation, placement.gas)
        await rpc.call("anvil_stopImpersonatingAccount", [placement.deployer])
        created = to_checksum_address(receipt["contractAddress"])
        if created != placement.address:
            raise FatalError(f"{placement.key} was created at {created}, not {placement.address}")
        return
    # Copied construction: build at a scratch address, then move code (own address patched)
    # and storage to the canonical address.
    await _impersonate(rpc, SCRATCH_DEPLOYER)
    receipt = await _send(rpc, SCRATCH_DEPLOYER, None, creation, placement.gas)
    scratch = to_checksum_address(receipt["contractAddress"])
    runtime = bytes.fromhex(str(await rpc.call("eth_getCode", [scratch, "latest"]))[2:])
    runtime = runtime.replace(bytes.fromhex(scratch[2:]), bytes.fromhex(placement.address[2:]))
    await rpc.call("anvil_setCode", [placement.address, "0x" + runtime.hex()])
    for slot, value in (await _dumped_storage(rpc, scratch)).items():
        await rpc.call(
            "anvil_setStorageAt",
            [
                placement.address,
                "0x" + int(slot, 16).to_bytes(32, "big").hex(),
                "0x" + int(value, 16).to_bytes(32, "big").hex(),
            ],
        )
    await rpc.call("anvil_setCode", [scratch, "0x"])


async def _place_token(rpc: JsonRpc, token: TokenPlacement, address: str) -> None:
    artifact = _artifact(_TOKEN_ARTIFACTS[token.kind])
    await rpc.call("anvil_setCode", [address, artifact["deployedBytecode"]])
    if token.kind == "fiat":
        init = calldata(
            "initialize(string,string,uint8,address)",
            ["string", "string", "uint8", "address"],
            [token.name, token.symbol, token.decimals, TOKEN_ISSUER],
        )
    elif token.kind in ("tether", "rebasing"):  # their decimals are fixed: 6 and 18
        init = calldata(
            "initialize(string,string,address)",
            ["string", "string", "address"],
            [token.name, token.symbol, TOKEN_ISSUER],
        )
    else:
        init = calldata(
            "initialize(string,string,uint8,address,uint16)",
            ["string", "string", "uint8", "address", "uint16"],
            [token.name, token.symbol, token.decimals, TOKEN_ISSUER, token.transfer_fee_bps],
        )
    await _send(rpc, TOKEN_ISSUER, address, init, 500_000)


def _issue(plan: _Plan, token: TokenPlacement, address: str, to: str, amount: int) -> None:
    if token.kind == "tether":  # Tether issues to its owner, who then transfers
        plan.call(f"issue {token.symbol}", address, "issue(uint256)", ["uint256"], [amount])
        plan.call(
            f"send {token.symbol}",
            address,
            "transfer(address,uint256)",
            ["address", "uint256"],
            [to, amount],
        )
    else:
        plan.call(
            f"mint {token.symbol}",
            address,
            "mint(address,uint256)",
            ["address", "uint256"],
            [to, amount],
        )


async def _plan_for(rpc: JsonRpc, sender: str) -> _Plan:
    nonce = int(await rpc.call("eth_getTransactionCount", [sender, "latest"]), 16)
    return _Plan(sender, nonce)


async def deploy_replica(rpc: JsonRpc, profile: ReplicaProfile, *, rpc_url: str = "") -> Deployment:
    """Place ``profile``'s contracts and tokens on a fresh Anvil at the chain's id, add the
    liquidity and fund the dev accounts; return the deployment (addresses by flat name)."""
    chain_id = int(await rpc.call("eth_chainId"), 16)
    if chain_id != profile.chain_id:
        raise FatalError(
            f"replica {profile.chain} needs chain id {profile.chain_id}, not {chain_id}"
        )
    addresses: dict[str, str] = {}
    for placement in profile.contracts:
        await _place_contract(rpc, placement, addresses)
        addresses[placement.key] = placement.address

    # Fee tier 100 (1 bp) was enabled by governance after launch on every chain.
    factory = addresses["uniswap_v3.factory"]
    owner_word = await rpc.call("eth_call", [{"to": factory, "data": "0x8da5cb5b"}, "latest"])
    owner = to_checksum_address("0x" + str(owner_word)[-40:])
    await _impersonate(rpc, owner)
    await _send(
        rpc,
        owner,
        factory,
        calldata("enableFeeAmount(uint24,int24)", ["uint24", "int24"], [100, 1]),
        200_000,
    )

    tokens = {t.symbol: t for t in profile.tokens}
    token_addresses = {t.symbol: profile.token_address(t) for t in profile.tokens}
    if token_addresses["WETH"] != addresses["WETH"]:
        raise FatalError(f"replica {profile.chain}: WETH placed at {addresses['WETH']}")
    await _impersonate(rpc, TOKEN_ISSUER)
    for token in profile.tokens:
        if token.kind != "weth":
            await _place_token(rpc, token, token_addresses[token.symbol])
        addresses[token.symbol] = token_addresses[token.symbol]

    # The issuer mints the liquidity provider's inventory and every funded account's share.
    issuer = await _plan_for(rpc, TOKEN_ISSUER)
    lp = LIQUIDITY_PROVIDER
    for token in profile.tokens:
        if token.kind == "weth":
            continue
        address = token_addresses[token.symbol]
        _issue(issuer, token, address, lp, _usd_to_units(Fraction(10**9), token))
        for account in FUNDED_ACCOUNTS:
            _issue(issuer, token, address, account, _usd_to_units(FUNDING_USD, token))
    await _execute(rpc, issuer)

    await rpc.call("anvil_setBalance", [lp, hex(10**30)])
    plan = await _plan_for(rpc, lp)
    weth = addresses["WETH"]
    plan.call("wrap ETH", weth, "deposit()", [], [], value=10**8 * 10**18)
    for account in FUNDED_ACCOUNTS:
        plan.call(
            "fund WETH",
            weth,
            "transfer(address,uint256)",
            ["address", "uint256"],
            [account, _usd_to_units(FUNDING_USD, tokens["WETH"])],
        )
    npm = addresses["uniswap_v3.position_manager"]
    spenders = (addresses["uniswap_v2.router"], addresses["sushiswap.router"], npm)
    for symbol, address in token_addresses.items():
        for spender in spenders:
            plan.call(
                f"approve {symbol}",
                address,
                "approve(address,uint256)",
                ["address", "uint256"],
                [spender, MAX_UINT256],
            )

    pools: list[PoolInfo] = []
    for dex, sym_a, sym_b, depth_usd in profile.v2_pools:
        a, b = token_addresses[sym_a], token_addresses[sym_b]
        plan.call(
            f"{dex} addLiquidity {sym_a}/{sym_b}",
            addresses[f"{dex}.router"],
            "addLiquidity(address,address,uint256,uint256,uint256,uint256,address,uint256)",
            ["address"] * 2 + ["uint256"] * 4 + ["address", "uint256"],
            [
                a,
                b,
                _usd_to_units(Fraction(depth_usd), tokens[sym_a]),
                _usd_to_units(Fraction(depth_usd), tokens[sym_b]),
                0,
                0,
                lp,
                _FAR_DEADLINE,
            ],
            gas=4_000_000,
        )
        t0, t1 = sort_tokens(a, b)
        factory_v2 = addresses[f"{dex}.factory"]
        pair = (
            v2_pair_address(factory_v2, t0, t1)
            if dex == "uniswap_v2"
            else _create2(
                factory_v2, keccak(bytes.fromhex(t0[2:] + t1[2:])), REPLICA_V2_PAIR_INIT_CODE_HASH
            )
        )
        pools.append(PoolInfo(dex, "v2", pair, t0, t1, 3000))

    for sym_a, sym_b, fee, depth_usd in profile.v3_pools:
        pools.append(
            _add_v3_pool(plan, addresses, tokens, token_addresses, sym_a, sym_b, fee, depth_usd)
        )

    await _execute(rpc, plan)
    await rpc.call("anvil_stopImpersonatingAccount", [TOKEN_ISSUER])
    l1_fee = chain_profile(profile.chain).l1_fee
    if l1_fee.kind == "op_stack" and l1_fee.oracle is not None:
        await place_gas_price_oracle(rpc, BASE_L1_FEE_PARAMS, l1_fee.oracle)
        addresses["gas_price_oracle"] = l1_fee.oracle
    if l1_fee.kind == "arbitrum" and l1_fee.oracle is not None:
        await place_node_interface(rpc, ARBITRUM_L1_FEE_PARAMS, l1_fee.oracle)
        addresses["node_interface"] = l1_fee.oracle
    return Deployment(
        name=profile.chain,
        chain_id=profile.chain_id,
        rpc_url=rpc_url,
        addresses=addresses,
        tokens={s: Token(token_addresses[s], s, t.decimals) for s, t in tokens.items()},
        pools=tuple(pools),
        prices_usd={s: float(t.price_usd) for s, t in tokens.items()},
    )


async def _place_with_storage(
    rpc: JsonRpc, artifact_path: Path, address: str, slots: tuple[int, ...]
) -> None:
    await rpc.call("anvil_setCode", [address, _artifact(artifact_path)["deployedBytecode"]])
    for slot, value in enumerate(slots):
        await rpc.call("anvil_setStorageAt", [address, hex(slot), "0x" + f"{value:064x}"])


async def place_gas_price_oracle(
    rpc: JsonRpc,
    params: OpL1FeeParams,
    address: str = "0x420000000000000000000000000000000000000F",
    operator: OperatorFeeParams = BASE_OPERATOR_FEE,
) -> None:
    """Put the GasPriceOracle (``contracts/ReplicaGasPriceOracle.sol``: Fjord L1 fees,
    Isthmus operator fee) at the OP-stack predeploy with ``params`` and ``operator`` in its
    storage (see the contract for the slot layout); calling it again changes the fees, as a
    new L1 block would on the real chain. Base is past Isthmus with a zero operator fee."""
    flags = 1 | (1 << 8) | (1 << 16) | (int(operator.jovian) << 24)  # Ecotone..Isthmus, Jovian
    slots = (
        flags,
        params.l1_base_fee_wei,
        params.blob_base_fee_wei,
        params.base_fee_scalar,
        params.blob_base_fee_scalar,
        operator.scalar,
        operator.constant_wei,
    )
    await _place_with_storage(rpc, GAS_PRICE_ORACLE_ARTIFACT, address, slots)


async def place_node_interface(
    rpc: JsonRpc,
    params: ArbitrumL1FeeParams,
    address: str = "0x00000000000000000000000000000000000000C8",
) -> None:
    """Put the replica NodeInterface (``contracts/ReplicaNodeInterface.sol``) at Arbitrum's
    0xC8 with ``params`` in its storage. A real NodeInterface is virtual (only a Nitro node
    answers it; there is no code at 0xC8), so Anvil cannot serve it: this contract mirrors its
    ABI and Nitro's formula. Calling it again changes the L1 price."""
    slots = (params.l1_price_per_unit_wei, params.min_base_fee_wei)
    await _place_with_storage(rpc, NODE_INTERFACE_ARTIFACT, address, slots)


async def stand_in_node_interface(fork: JsonRpc, upstream: JsonRpc, chain: str) -> str | None:
    """On a local fork of an Arbitrum chain, the replica NodeInterface at 0xC8 priced with the
    upstream's L1 price per unit: the real one is virtual, so a fork has no code there and
    the agent could price no L1 part (it would refuse every arbitrage). Returns what it did,
    for the operator; None where nothing was needed (not Arbitrum, or code already there)."""
    model = chain_profile(chain).l1_fee
    if model.kind != "arbitrum" or model.oracle is None:
        return None
    if len(str(await fork.call("eth_getCode", [model.oracle, "latest"]))) > 2:
        return None
    signature = "gasEstimateL1Component(address,bool,bytes)"
    call = calldata_hex(signature, ["address", "bool", "bytes"], [_ZERO, False, b""])
    answer = await upstream.call("eth_call", [{"to": model.oracle, "data": call}, "latest"])
    _, _, l1_price = decode(["uint64", "uint256", "uint256"], bytes.fromhex(str(answer)[2:]))
    params = ArbitrumL1FeeParams(int(l1_price), ARBITRUM_L1_FEE_PARAMS.min_base_fee_wei)
    await place_node_interface(fork, params, model.oracle)
    return (
        f"NodeInterface stand-in at {model.oracle} (virtual on the real chain): "
        f"L1 price {params.l1_price_per_unit_wei} wei per unit, as upstream"
    )


def node_interface_l1_cost_wei(data: bytes, params: ArbitrumL1FeeParams) -> int:
    """The replica NodeInterface's padded L1 cost (wei) of a transaction carrying ``data``:
    Nitro's estimation formula over FastLZ's size of the calldata plus 140 bytes (see the
    contract); ``gasEstimateL1Component`` divides it by the L2 base fee."""
    l1_bytes = fastlz_compressed_length(data) + 140
    units = (16 * l1_bytes + 256) * 10_100 // 10_000
    return params.l1_price_per_unit_wei * units * 11_000 // 10_000


def node_interface_gas_for_l1(data: bytes, params: ArbitrumL1FeeParams, base_fee_wei: int) -> int:
    """``gasEstimateL1Component``'s ``gasEstimateForL1`` for ``data`` at an L2 base fee of
    ``base_fee_wei`` on the replica (never below the floor)."""
    return node_interface_l1_cost_wei(data, params) // max(base_fee_wei, params.min_base_fee_wei, 1)


def _create2(factory: str, salt: bytes, init_code_hash: bytes) -> str:
    raw = keccak(b"\xff" + bytes.fromhex(factory[2:]) + salt + init_code_hash)
    return to_checksum_address(raw[12:])


def _add_v3_pool(
    plan: _Plan,
    addresses: dict[str, str],
    tokens: dict[str, TokenPlacement],
    token_addresses: dict[str, str],
    sym_a: str,
    sym_b: str,
    fee: int,
    depth_usd: int,
) -> PoolInfo:
    """Create and initialize one V3 pool at the tokens' USD prices, with positions across
    several ranges (see ``V3_POSITIONS``) so that swaps cross initialized ticks."""
    npm = addresses["uniswap_v3.position_manager"]
    t0, t1 = sort_tokens(token_addresses[sym_a], token_addresses[sym_b])
    spec0, spec1 = (
        (tokens[sym_a], tokens[sym_b])
        if t0 == token_addresses[sym_a]
        else (tokens[sym_b], tokens[sym_a])
    )
    spacing = plan_v3_pool(
        plan,
        npm,
        f"{sym_a}/{sym_b}",
        (t0, spec0),
        (t1, spec1),
        fee,
        depth_usd,
        V3_POSITIONS,
        recipient=plan.sender,
    )
    return PoolInfo(
        "uniswap_v3",
        "v3",
        v3_pool_address(addresses["uniswap_v3.factory"], t0, t1, fee),
        t0,
        t1,
        fee,
        spacing,
    )


V2_PAIR_INIT_CODE_HASHES = MappingProxyType({"sushiswap": REPLICA_V2_PAIR_INIT_CODE_HASH})


class Replica(Devnet):
    """A replica of a real chain (``"ethereum"``, ``"base"``, ``"arbitrum"``): Anvil at the
    chain's id carrying the profile's contracts. ``async with Replica("ethereum") as chain:``;
    ``state_file`` saves the deployment once and later starts load it (as ``Devnet`` does).
    Writes no deployment file by default: the agent finds everything through the registry."""

    def __init__(
        self,
        chain: str,
        *,
        state_file: Path | None = None,
        deployments_dir: Path | None = None,
        block_time_s: int | None = None,
    ) -> None:
        self.profile = replica_profile(chain)
        super().__init__(
            name=chain,
            chain_id=self.profile.chain_id,
            state_file=state_file,
            deployments_dir=deployments_dir,
            block_time_s=block_time_s,
        )

    @property
    def v2_pair_init_code_hashes(self) -> dict[str, bytes]:
        """Pair init-code hash per V2 DEX on this replica (Sushi's addresses carry our fork)."""
        return dict(V2_PAIR_INIT_CODE_HASHES)

    async def _deploy(self, rpc: JsonRpc) -> Deployment:
        return await deploy_replica(rpc, self.profile, rpc_url=self.rpc_url)

    def _state_key(self) -> str:
        digest = hashlib.sha256(f"replica={self.profile.chain}".encode())
        for path in replica_source_files():
            if path.is_file():
                digest.update(path.read_bytes())
        return digest.hexdigest()
