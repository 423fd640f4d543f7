"""Simulated market activity for the demo and end-to-end tests.

Noise traders swap small random amounts on random pools; every ``gap_every`` steps a large
trade on one V2 DEX pushes its WETH/USDC price away from the other DEX's (an arbitrage gap the
agent should close); every ``whale_every`` steps a whale wallet swaps on a V2 and a V3 pool
(what whale-follow watches). A reference "CEX" price follows the pools with a small random
walk, for the simulated CEX feed. Everything is seeded and reproducible.

Transactions are sent by Anvil's unlocked dev accounts through the real routers, without
waiting for each receipt (approve and swap land in the same block in nonce order); receipts
of the previous step are checked on the next one (``reverted`` counts the failures).

It runs on the devnet and on the chain replicas alike: V2 swaps use Router02's
fee-on-transfer-supporting function (the replicas carry a fee-on-transfer and a rebasing
token), an allowance a failed swap left behind is reset to 0 before the next approval (the
replicas' USDT refuses non-zero to non-zero), and V3 swaps go through SwapRouter02 where a chain
has no SwapRouter (Base).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

from agent.chain.abi import calldata_hex
from agent.devnet.deploy import Deployment
from agent.devnet.jsonrpc import JsonRpc
from agent.devnet.node import DEV_ACCOUNTS

log = logging.getLogger(__name__)
_FAR_DEADLINE = 2**40


@dataclass
class MarketSimulator:
    """Drives the devnet market one step at a time (call ``step()`` once per block)."""

    rpc: JsonRpc
    deployment: Deployment
    seed: int = 7
    gap_every: int = 4
    gap_usd: float = 400_000.0
    whale_every: int = 9
    whale_usd: float = 150_000.0
    noise_trades: int = 2
    noise_usd: float = 5_000.0
    noise_traders: tuple[str, ...] = tuple(a for a, _ in DEV_ACCOUNTS[5:8])
    gapper: str = DEV_ACCOUNTS[4][0]
    whale: str = DEV_ACCOUNTS[8][0]
    steps: int = 0
    reverted: int = 0
    cex_drift: dict[str, float] = field(default_factory=dict)
    _pending: list[tuple[str, str]] = field(default_factory=list)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    async def step(self) -> int:
        """One round of activity; returns the number of swaps sent."""
        await self._check_previous()
        self.steps += 1
        sent = 0
        for _ in range(self.noise_trades):
            sent += await self._noise_trade()
        if self.gap_every and self.steps % self.gap_every == 0:
            sent += await self._open_gap()
        if self.whale_every and self.steps % self.whale_every == 0:
            sent += await self._whale_trades()
        for symbol in ("WETH", "WBTC"):
            drift = self.cex_drift.get(symbol, 0.0) + self._rng.gauss(0, 0.0008)
            self.cex_drift[symbol] = max(-0.02, min(0.02, drift * 0.9))
        return sent

    def cex_price_usd(self, symbol: str, pool_price_usd: float) -> float:
        """A CEX mid that tracks the pools with a small mean-reverting drift."""
        return pool_price_usd * (1 + self.cex_drift.get(symbol, 0.0))

    # -- trades --------------------------------------------------------------------------------
    def _units(self, symbol: str, usd: float) -> int:
        token = self.deployment.tokens[symbol]
        price = self.deployment.prices_usd[symbol]
        return int(usd / price * 10**token.decimals)

    async def _noise_trade(self) -> int:
        pools = [
            p for p in self.deployment.pools if not _is_alt(self.deployment, p.token0, p.token1)
        ]
        pool = self._rng.choice(pools)
        by_address = {t.address: s for s, t in self.deployment.tokens.items()}
        token_in, token_out = (pool.token0, pool.token1)
        if self._rng.random() < 0.5:
            token_in, token_out = token_out, token_in
        amount = self._units(by_address[token_in], self.noise_usd * self._rng.uniform(0.2, 1.0))
        trader = self._rng.choice(self.noise_traders)
        if pool.kind == "v2":
            await self._swap_v2(trader, pool.dex, [token_in, token_out], amount)
        else:
            await self._swap_v3(trader, token_in, token_out, pool.fee_pips, amount)
        return 1

    async def _open_gap(self) -> int:
        dex = self._rng.choice(["uniswap_v2", "sushiswap"])
        a = self.deployment.addresses
        if self._rng.random() < 0.5:
            path, amount = [a["USDC"], a["WETH"]], self._units("USDC", self.gap_usd)
        else:
            path, amount = [a["WETH"], a["USDC"]], self._units("WETH", self.gap_usd)
        await self._swap_v2(self.gapper, dex, path, amount)
        log.info("simulated market: opened a price gap on %s (%s -> %s)", dex, path[0], path[1])
        return 1

    async def _whale_trades(self) -> int:
        a = self.deployment.addresses
        await self._swap_v2(
            self.whale, "uniswap_v2", [a["USDC"], a["WETH"]], self._units("USDC", self.whale_usd)
        )
        usdc_v3 = [
            p
            for p in self.deployment.pools
            if p.kind == "v3"
            and a["USDC"] in (p.token0, p.token1)
            and a["WETH"] not in (p.token0, p.token1)
        ]
        # USDC -> WBTC where that pool exists (the devnet, Ethereum), else another USDC pool
        pool = next(
            (p for p in usdc_v3 if a.get("WBTC") in (p.token0, p.token1) and p.fee_pips == 3000),
            usdc_v3[0] if usdc_v3 else None,
        )
        if pool is None:
            return 1
        token_out = pool.token1 if pool.token0 == a["USDC"] else pool.token0
        await self._swap_v3(
            self.whale, a["USDC"], token_out, pool.fee_pips, self._units("USDC", self.whale_usd / 2)
        )
        return 2

    async def _send(self, sender: str, to: str, data: str, label: str) -> None:
        tx_hash = await self.rpc.call(
            "eth_sendTransaction", [{"from": sender, "to": to, "data": data, "gas": hex(800_000)}]
        )
        self._pending.append((tx_hash, label))

    async def _swap_v2(self, trader: str, dex: str, path: list[str], amount_in: int) -> None:
        router = self.deployment.addresses[f"{dex}.router"]
        await self._approve(trader, path[0], router, amount_in)
        data = calldata_hex(
            "swapExactTokensForTokensSupportingFeeOnTransferTokens"
            "(uint256,uint256,address[],address,uint256)",
            ["uint256", "uint256", "address[]", "address", "uint256"],
            [amount_in, 0, path, trader, _FAR_DEADLINE],
        )
        await self._send(trader, router, data, f"{dex} swap")

    async def _swap_v3(
        self, trader: str, token_in: str, token_out: str, fee_pips: int, amount_in: int
    ) -> None:
        a = self.deployment.addresses
        if "uniswap_v3.swap_router" in a:
            router = a["uniswap_v3.swap_router"]
            data = calldata_hex(
                "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))",
                ["(address,address,uint24,address,uint256,uint256,uint256,uint160)"],
                [(token_in, token_out, fee_pips, trader, _FAR_DEADLINE, amount_in, 0, 0)],
            )
        else:  # SwapRouter02: no deadline in the params
            router = a["uniswap_v3.swap_router02"]
            data = calldata_hex(
                "exactInputSingle((address,address,uint24,address,uint256,uint256,uint160))",
                ["(address,address,uint24,address,uint256,uint256,uint160)"],
                [(token_in, token_out, fee_pips, trader, amount_in, 0, 0)],
            )
        await self._approve(trader, token_in, router, amount_in)
        await self._send(trader, router, data, "uniswap_v3 swap")

    async def _approve(self, trader: str, token: str, spender: str, amount: int) -> None:
        leftover = await self.rpc.call(
            "eth_call",
            [
                {
                    "to": token,
                    "data": calldata_hex(
                        "allowance(address,address)", ["address", "address"], [trader, spender]
                    ),
                },
                "latest",
            ],
        )
        if int(leftover, 16) != 0:  # a reverted swap left it: USDT-like tokens need 0 first
            zero = calldata_hex("approve(address,uint256)", ["address", "uint256"], [spender, 0])
            await self._send(trader, token, zero, "approve")
        data = calldata_hex("approve(address,uint256)", ["address", "uint256"], [spender, amount])
        await self._send(trader, token, data, "approve")

    async def _check_previous(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        receipts = await self.rpc.batch([("eth_getTransactionReceipt", [h]) for h, _ in pending])
        for (tx_hash, label), receipt in zip(pending, receipts, strict=True):
            if receipt is None:
                self._pending.append((tx_hash, label))  # not mined yet: look again next step
            elif int(receipt["status"], 16) != 1:
                self.reverted += 1
                log.warning("simulated %s reverted (tx %s)", label, tx_hash)


def _is_alt(deployment: Deployment, token0: str, token1: str) -> bool:
    symbols = {t.address: s for s, t in deployment.tokens.items()}
    return symbols.get(token0, "").startswith("ALT") or symbols.get(token1, "").startswith("ALT")
