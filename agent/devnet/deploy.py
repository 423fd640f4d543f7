"""Deploy the devnet: WETH9, test tokens, two Uniswap V2 stacks, a Uniswap V3 stack, Multicall3.

The Uniswap contracts are deployed from the npm build artifacts exactly as published (their
pair/pool bytecode hashes match the init-code hashes the routers and quoters hardcode), never
recompiled. Our own contracts (TestERC20, Multicall3) come from ``abis/``.

Why it is fast: every address is known before anything is sent (CREATE addresses follow the
deployer's nonce, pools follow CREATE2), so the whole plan — a few hundred transactions — is sent
in one JSON-RPC batch with automine off and mined in a single block, then every receipt is checked.

Liquidity sits at realistic prices (ETH ~ 3,000 USD, BTC ~ 60,000 USD). Each V3 pool carries
several overlapping concentrated positions, so realistic swaps cross initialized ticks.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from itertools import combinations
from pathlib import Path
from typing import Any, Protocol

import rlp
from eth_abi import encode
from eth_utils import keccak, to_checksum_address

from agent.chain.abi import calldata, sort_tokens, v2_pair_address, v3_pool_address
from agent.chain.registry import DeployedPool
from agent.devnet.jsonrpc import JsonRpc
from agent.devnet.node import DEV_ACCOUNTS, PROJECT_ROOT
from agent.errors import FatalError
from agent.types import Token

MULTICALL3_ADDRESS = "0xcA11bde05977b3631167028862bE2a173976CA11"
V3_TICK_SPACING = {100: 1, 500: 10, 3000: 60, 10000: 200}
V2_DEXES = ("uniswap_v2", "sushiswap")
MAX_UINT256 = 2**256 - 1
_FAR_DEADLINE = 2**48
_MIN_TICK, _MAX_TICK = -887272, 887272

_NPM = PROJECT_ROOT / "anvil" / "node_modules" / "@uniswap"
_ABIS = PROJECT_ROOT / "abis"


@dataclass(frozen=True, slots=True)
class TokenSpec:
    symbol: str
    decimals: int
    price_usd: Fraction


BASE_TOKENS: tuple[TokenSpec, ...] = (
    TokenSpec("USDC", 6, Fraction(1)),
    TokenSpec("WBTC", 8, Fraction(60_000)),
    TokenSpec("DAI", 18, Fraction(1)),
    TokenSpec("LINK", 18, Fraction(15)),
    TokenSpec("UNI", 18, Fraction(8)),
    TokenSpec("AAVE", 18, Fraction(150)),
)
WETH_SPEC = TokenSpec("WETH", 18, Fraction(3_000))

# (token a, token b, fee pips, USD per side of the whole pool)
BASE_V3_POOLS: tuple[tuple[str, str, int, int], ...] = (
    ("WETH", "USDC", 100, 2_000_000),
    ("WETH", "USDC", 500, 20_000_000),
    ("WETH", "USDC", 3000, 8_000_000),
    ("WETH", "USDC", 10000, 1_000_000),
    ("USDC", "DAI", 100, 10_000_000),
    ("USDC", "DAI", 500, 2_000_000),
    ("WBTC", "WETH", 500, 8_000_000),
    ("WBTC", "WETH", 3000, 4_000_000),
    ("WBTC", "USDC", 3000, 4_000_000),
    ("WETH", "DAI", 3000, 3_000_000),
    ("LINK", "WETH", 3000, 2_000_000),
    ("LINK", "WETH", 10000, 500_000),
    ("UNI", "WETH", 3000, 1_500_000),
    ("AAVE", "WETH", 3000, 1_500_000),
    ("AAVE", "WETH", 10000, 500_000),
)
# Positions per V3 pool: (lower tick offset, upper tick offset, share of the pool's capital).
# Offsets are rounded outwards to the tick spacing; overlapping ranges give many initialized ticks.
V3_POSITIONS: tuple[tuple[int | None, int | None, Fraction], ...] = (
    (None, None, Fraction(20, 100)),  # full range
    (-2000, 2000, Fraction(20, 100)),
    (-900, 500, Fraction(15, 100)),
    (-400, 700, Fraction(15, 100)),
    (-150, 150, Fraction(15, 100)),
    (-60, 40, Fraction(15, 100)),
)
_DEX_DEPTH_FACTOR = {"uniswap_v2": Fraction(1), "sushiswap": Fraction(2, 5)}
_MAJOR = {"WETH", "USDC", "WBTC", "DAI"}


# The deployment file's pool record is the registry's, so both read the same JSON.
PoolInfo = DeployedPool


@dataclass(frozen=True)
class Deployment:
    """Everything a client needs to find the devnet's contracts, tokens and pools."""

    name: str
    chain_id: int
    rpc_url: str
    addresses: dict[str, str]
    tokens: dict[str, Token]
    pools: tuple[PoolInfo, ...]
    prices_usd: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "chain_id": self.chain_id,
                "rpc_url": self.rpc_url,
                "addresses": self.addresses,
                "tokens": {
                    s: {"address": t.address, "decimals": t.decimals}
                    for s, t in self.tokens.items()
                },
                "pools": [asdict(p) for p in self.pools],
                "prices_usd": self.prices_usd,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> Deployment:
        raw = json.loads(text)
        return cls(
            name=raw["name"],
            chain_id=int(raw["chain_id"]),
            rpc_url=raw["rpc_url"],
            addresses=dict(raw["addresses"]),
            tokens={
                s: Token(address=t["address"], symbol=s, decimals=int(t["decimals"]))
                for s, t in raw["tokens"].items()
            },
            pools=tuple(PoolInfo(**p) for p in raw["pools"]),
            prices_usd={k: float(v) for k, v in raw.get("prices_usd", {}).items()},
        )

    def with_rpc_url(self, rpc_url: str) -> Deployment:
        return Deployment(
            self.name,
            self.chain_id,
            rpc_url,
            self.addresses,
            self.tokens,
            self.pools,
            self.prices_usd,
        )


def _artifact(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FatalError(f"missing contract artifact {path}; run `make setup`")
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def _creation_code(artifact: dict[str, Any]) -> bytes:
    code = artifact["bytecode"]
    if isinstance(code, dict):  # some artifacts nest it
        code = code["object"]
    return bytes.fromhex(str(code).removeprefix("0x"))


def create_address(sender: str, nonce: int) -> str:
    """Address of the contract a CREATE from ``sender`` at ``nonce`` makes."""
    encoded = rlp.encode([bytes.fromhex(sender[2:]), nonce])
    return to_checksum_address(keccak(encoded)[12:])


def sqrt_price_x96(price_raw: Fraction) -> int:
    """floor(sqrt(price) * 2**96) for a raw price (token1 units per token0 unit)."""
    return math.isqrt(price_raw.numerator * 2**192 // price_raw.denominator)


@dataclass
class _Tx:
    label: str
    to: str | None
    data: bytes
    gas: int
    value: int = 0


class _Plan:
    """Transactions from one sender in nonce order, with the addresses they will create."""

    def __init__(self, sender: str, first_nonce: int) -> None:
        self.sender = sender
        self.nonce = first_nonce
        self.txs: list[_Tx] = []
        self.legacy_gas = False  # a node before London: gasPrice, not EIP-1559 fee fields

    def deploy(
        self,
        label: str,
        code: bytes,
        types: Sequence[str] = (),
        args: Sequence[Any] = (),
        gas: int = 8_000_000,
    ) -> str:
        address = create_address(self.sender, self.nonce)
        self._add(_Tx(label, None, code + encode(list(types), list(args)), gas))
        return address

    def call(
        self,
        label: str,
        to: str,
        signature: str,
        types: Sequence[str],
        args: Sequence[Any],
        gas: int = 300_000,
        value: int = 0,
    ) -> None:
        self._add(_Tx(label, to, calldata(signature, types, args), gas, value))

    def _add(self, tx: _Tx) -> None:
        self.txs.append(tx)
        self.nonce += 1


def _usd_to_units(usd: Fraction, spec: PricedToken) -> int:
    return int(usd / spec.price_usd * 10**spec.decimals)


class PricedToken(Protocol):
    """What placing liquidity needs of a token: its USD price and decimals."""

    @property
    def price_usd(self) -> Fraction: ...

    @property
    def decimals(self) -> int: ...


def plan_v3_pool(
    plan: _Plan,
    position_manager: str,
    label: str,
    token0: tuple[str, PricedToken],
    token1: tuple[str, PricedToken],
    fee: int,
    depth_usd: int,
    positions: Sequence[tuple[int | None, int | None, Fraction]],
    *,
    recipient: str,
) -> int:
    """Plan creating the ``fee`` pool of ``token0``/``token1`` (sorted) at their USD prices and
    minting ``positions`` (tick offsets around the price, share of ``depth_usd``) for
    ``recipient``, so swaps cross initialized ticks. Returns the pool's tick spacing."""
    (t0, spec0), (t1, spec1) = token0, token1
    price_raw = spec0.price_usd / spec1.price_usd * Fraction(10**spec1.decimals, 10**spec0.decimals)
    plan.call(
        f"v3 create {label} {fee}",
        position_manager,
        "createAndInitializePoolIfNecessary(address,address,uint24,uint160)",
        ["address", "address", "uint24", "uint160"],
        [t0, t1, fee, sqrt_price_x96(price_raw)],
        gas=6_000_000,
    )
    spacing = V3_TICK_SPACING[fee]
    tick = math.floor(math.log(price_raw.numerator / price_raw.denominator) / math.log(1.0001))
    for lower_off, upper_off, share in positions:
        if lower_off is None or upper_off is None:
            lower = -(_MAX_TICK // spacing) * spacing
            upper = (_MAX_TICK // spacing) * spacing
        else:
            lower = math.floor((tick + min(lower_off, -spacing)) / spacing) * spacing
            upper = math.ceil((tick + max(upper_off, spacing)) / spacing) * spacing
        capital = Fraction(depth_usd) * share
        plan.call(
            f"v3 mint {label} {fee} [{lower},{upper}]",
            position_manager,
            "mint((address,address,uint24,int24,int24,uint256,uint256,uint256,uint256,address,uint256))",
            [
                "(address,address,uint24,int24,int24,uint256,uint256,uint256,uint256,address,uint256)"
            ],
            [
                (
                    t0,
                    t1,
                    fee,
                    lower,
                    upper,
                    _usd_to_units(capital, spec0),
                    _usd_to_units(capital, spec1),
                    0,
                    0,
                    recipient,
                    _FAR_DEADLINE,
                )
            ],
            gas=1_000_000,
        )
    return spacing


def _extra_tokens(count: int) -> list[TokenSpec]:
    # Deterministic alt-coins with assorted prices, for scale (benchmarks with hundreds of pools).
    return [TokenSpec(f"ALT{i}", 18, Fraction(3 + 7 * i, 2)) for i in range(count)]


async def deploy_stack(
    rpc: JsonRpc,
    *,
    name: str = "devnet",
    chain_id: int = 31337,
    rpc_url: str = "",
    extra_tokens: int = 0,
    fund_accounts: int = 9,
    one_block: bool = True,
    artifacts_dir: Path = _ABIS,
    legacy_gas: bool = False,
) -> Deployment:
    """Deploy everything on a fresh Anvil reachable through ``rpc``; return the deployment.

    ``extra_tokens`` adds alt tokens paired on both V2 DEXes with every other token and on V3
    with WETH and USDC (five pools each), to reach benchmark scale: 9 extra tokens give 240 V2
    and 60 V3 pools. ``fund_accounts`` dev accounts after the deployer get 2M USD of every base
    token for tests and simulated traders. ``artifacts_dir`` holds our contracts' builds
    (``abis/london`` for a node before Shanghai, which has no PUSH0).
    """
    deployer = DEV_ACCOUNTS[0][0]
    await rpc.call("anvil_setBalance", [deployer, hex(10**30)])
    nonce = int(await rpc.call("eth_getTransactionCount", [deployer, "latest"]), 16)
    plan = _Plan(deployer, nonce)
    plan.legacy_gas = legacy_gas

    specs = {s.symbol: s for s in (WETH_SPEC, *BASE_TOKENS, *_extra_tokens(extra_tokens))}
    addresses: dict[str, str] = {}

    weth9 = _artifact(_NPM / "v2-periphery/build/WETH9.json")
    addresses["WETH"] = plan.deploy("WETH9", _creation_code(weth9))
    test_erc20 = _creation_code(_artifact(artifacts_dir / "TestERC20.json"))
    for spec in specs.values():
        if spec.symbol == "WETH":
            continue
        addresses[spec.symbol] = plan.deploy(
            f"token {spec.symbol}",
            test_erc20,
            ["string", "string", "uint8"],
            [f"Test {spec.symbol}", spec.symbol, spec.decimals],
            gas=2_000_000,
        )

    v2_factory = _creation_code(_artifact(_NPM / "v2-core/build/UniswapV2Factory.json"))
    v2_router = _creation_code(_artifact(_NPM / "v2-periphery/build/UniswapV2Router02.json"))
    for dex in V2_DEXES:
        addresses[f"{dex}.factory"] = plan.deploy(
            f"{dex} factory", v2_factory, ["address"], [deployer], gas=6_000_000
        )
        addresses[f"{dex}.router"] = plan.deploy(
            f"{dex} router",
            v2_router,
            ["address", "address"],
            [addresses[f"{dex}.factory"], addresses["WETH"]],
        )

    v3 = _NPM / "v3-core/artifacts/contracts"
    v3p = _NPM / "v3-periphery/artifacts/contracts"
    v3_factory = addresses["uniswap_v3.factory"] = plan.deploy(
        "v3 factory",
        _creation_code(_artifact(v3 / "UniswapV3Factory.sol/UniswapV3Factory.json")),
        gas=12_000_000,
    )
    plan.call(
        "v3 enable fee 100",
        v3_factory,
        "enableFeeAmount(uint24,int24)",
        ["uint24", "int24"],
        [100, 1],
    )
    periphery_args = (["address", "address"], [v3_factory, addresses["WETH"]])
    addresses["uniswap_v3.swap_router"] = plan.deploy(
        "v3 swap router",
        _creation_code(_artifact(v3p / "SwapRouter.sol/SwapRouter.json")),
        *periphery_args,
    )
    addresses["uniswap_v3.quoter_v2"] = plan.deploy(
        "v3 quoter v2",
        _creation_code(_artifact(v3p / "lens/QuoterV2.sol/QuoterV2.json")),
        *periphery_args,
    )
    npm = addresses["uniswap_v3.position_manager"] = plan.deploy(
        "v3 position manager",
        _creation_code(
            _artifact(v3p / "NonfungiblePositionManager.sol/NonfungiblePositionManager.json")
        ),
        ["address", "address", "address"],
        [v3_factory, addresses["WETH"], "0x" + "00" * 20],
        gas=12_000_000,
    )
    addresses["multicall3"] = MULTICALL3_ADDRESS

    # Inventory: the deployer mints every test token and wraps ETH; approvals here are the
    # deployer's own on a throwaway devnet (the agent itself only ever approves exact amounts).
    plan.call("wrap ETH", addresses["WETH"], "deposit()", [], [], value=10**6 * 10**18)
    for symbol, spec in specs.items():
        if symbol != "WETH":
            plan.call(
                f"mint {symbol}",
                addresses[symbol],
                "mint(address,uint256)",
                ["address", "uint256"],
                [deployer, 10**12 * 10**spec.decimals],
            )
        for spender in (*(addresses[f"{d}.router"] for d in V2_DEXES), npm):
            plan.call(
                f"approve {symbol}",
                addresses[symbol],
                "approve(address,uint256)",
                ["address", "uint256"],
                [spender, MAX_UINT256],
            )

    pools: list[PoolInfo] = []
    # V2: every pair of tokens on both DEXes; sushiswap a little shallower than uniswap_v2.
    for sym_a, sym_b in combinations(specs, 2):
        spec_a, spec_b = specs[sym_a], specs[sym_b]
        pair_depth = Fraction(5_000_000 if {sym_a, sym_b} <= _MAJOR else 1_000_000)
        for dex in V2_DEXES:
            depth = pair_depth * _DEX_DEPTH_FACTOR[dex]
            plan.call(
                f"{dex} addLiquidity {sym_a}/{sym_b}",
                addresses[f"{dex}.router"],
                "addLiquidity(address,address,uint256,uint256,uint256,uint256,address,uint256)",
                ["address"] * 2 + ["uint256"] * 4 + ["address", "uint256"],
                [
                    addresses[sym_a],
                    addresses[sym_b],
                    _usd_to_units(depth, spec_a),
                    _usd_to_units(depth, spec_b),
                    0,
                    0,
                    deployer,
                    _FAR_DEADLINE,
                ],
                gas=4_000_000,
            )
            t0, t1 = sort_tokens(addresses[sym_a], addresses[sym_b])
            pools.append(
                PoolInfo(
                    dex,
                    "v2",
                    v2_pair_address(addresses[f"{dex}.factory"], t0, t1),
                    t0,
                    t1,
                    3000,
                )
            )

    v3_pools = list(BASE_V3_POOLS)
    for spec in _extra_tokens(extra_tokens):
        v3_pools += [(spec.symbol, "WETH", fee, 1_000_000) for fee in (500, 3000, 10000)]
        v3_pools += [(spec.symbol, "USDC", fee, 1_000_000) for fee in (3000, 10000)]
    for sym_a, sym_b, fee, depth_usd in v3_pools:
        t0, t1 = sort_tokens(addresses[sym_a], addresses[sym_b])
        spec0, spec1 = (
            (specs[sym_a], specs[sym_b]) if t0 == addresses[sym_a] else (specs[sym_b], specs[sym_a])
        )
        positions = (
            V3_POSITIONS if sym_a in specs and not sym_a.startswith("ALT") else V3_POSITIONS[:3]
        )
        spacing = plan_v3_pool(
            plan,
            npm,
            f"{sym_a}/{sym_b}",
            (t0, spec0),
            (t1, spec1),
            fee,
            depth_usd,
            positions,
            recipient=deployer,
        )
        pools.append(
            PoolInfo(
                "uniswap_v3",
                "v3",
                v3_pool_address(v3_factory, t0, t1, fee),
                t0,
                t1,
                fee,
                spacing,
            )
        )

    # Test and simulated-trader accounts: 2M USD of every base token each.
    for account, _key in DEV_ACCOUNTS[1 : 1 + fund_accounts]:
        for symbol in ("WETH", *(s.symbol for s in BASE_TOKENS)):
            plan.call(
                f"fund {account[:8]} {symbol}",
                addresses[symbol],
                "transfer(address,uint256)",
                ["address", "uint256"],
                [account, _usd_to_units(Fraction(2_000_000), specs[symbol])],
                gas=100_000,
            )

    await (_execute(rpc, plan) if one_block else _execute_one_by_one(rpc, plan))
    multicall = _artifact(artifacts_dir / "Multicall3.json")
    await rpc.call("anvil_setCode", [MULTICALL3_ADDRESS, multicall["deployedBytecode"]])

    return Deployment(
        name=name,
        chain_id=chain_id,
        rpc_url=rpc_url,
        addresses=addresses,
        tokens={
            s: Token(address=addresses[s], symbol=s, decimals=spec.decimals)
            for s, spec in specs.items()
        },
        pools=tuple(pools),
        prices_usd={s: float(spec.price_usd) for s, spec in specs.items()},
    )


def _send_params(plan: _Plan, i: int, tx: _Tx) -> list[dict[str, str]]:
    return [
        {
            "from": plan.sender,
            **({"to": tx.to} if tx.to else {}),
            "data": "0x" + tx.data.hex(),
            "gas": hex(tx.gas),
            "value": hex(tx.value),
            "nonce": hex(plan.nonce - len(plan.txs) + i),
            **(
                {"gasPrice": hex(10 * 10**9)}
                if plan.legacy_gas
                else {"maxFeePerGas": hex(100 * 10**9), "maxPriorityFeePerGas": hex(10**9)}
            ),
        }
    ]


def _check_receipts(plan: _Plan, receipts: Sequence[dict[str, str] | None]) -> None:
    failed = [
        tx.label
        for tx, receipt in zip(plan.txs, receipts, strict=True)
        if receipt is None or int(receipt["status"], 16) != 1
    ]
    if failed:
        raise FatalError(f"devnet deployment failed at: {', '.join(failed[:10])}")


async def _execute_one_by_one(rpc: JsonRpc, plan: _Plan) -> None:
    receipts = []
    for i, tx in enumerate(plan.txs):
        tx_hash = await rpc.call("eth_sendTransaction", _send_params(plan, i, tx))
        while (receipt := await rpc.call("eth_getTransactionReceipt", [tx_hash])) is None:
            await asyncio.sleep(0.001)  # automine answers before the block is stored
        receipts.append(receipt)
    _check_receipts(plan, receipts)


async def _execute(rpc: JsonRpc, plan: _Plan, *, txs_per_block: int | None = None) -> None:
    """Send the plan in batches, mine each batch in one block (all of it in one block unless
    ``txs_per_block`` is given), check every receipt."""
    block = await rpc.call("eth_getBlockByNumber", ["latest", False])
    gas_limit = int(block["gasLimit"], 16)
    size = txs_per_block or max(1, len(plan.txs))
    hashes: list[str] = []
    await rpc.call("evm_setAutomine", [False])
    try:
        for start in range(0, len(plan.txs), size):
            txs = plan.txs[start : start + size]
            await rpc.call("evm_setBlockGasLimit", [hex(sum(tx.gas for tx in txs) + 1_000_000)])
            requests = [
                ("eth_sendTransaction", _send_params(plan, start + i, tx))
                for i, tx in enumerate(txs)
            ]
            hashes += await rpc.batch(requests)
            await rpc.call("evm_mine", [])
    finally:
        await rpc.call("evm_setAutomine", [True])
    await rpc.call("evm_setBlockGasLimit", [hex(gas_limit)])
    receipts = []
    for start in range(0, len(hashes), size):
        chunk = hashes[start : start + size]
        receipts += await rpc.batch([("eth_getTransactionReceipt", [h]) for h in chunk])
    _check_receipts(plan, receipts)
