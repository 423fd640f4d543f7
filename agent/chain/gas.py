"""Gas oracle from ``eth_feeHistory``: base fees, priority-fee percentiles, next base fee,
EIP-1559 fee caps from config, and the USD cost of a gas amount.

All fees are ``int`` wei per gas. The next block's base fee is computed with the EIP-1559 rule
from the newest block's ``gasUsed``, ``gasLimit`` and ``baseFeePerGas`` (one ``eth_getBlock``);
nodes also report it as the last ``baseFeePerGas`` entry of ``eth_feeHistory``, and the oracle
logs a warning when the two disagree (a chain with different fee parameters).

``max_fee = min(cap, 2 * next_base_fee + priority)``: doubling the base fee keeps a transaction
includable through ~6 consecutive full blocks (+12.5 % each). The priority fee is a configured
percentile of recent blocks' rewards (median across blocks), clamped to [min, max].
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from web3 import AsyncWeb3

from agent.chain.registry import ETHEREUM_GAS, LEGACY_GAS, GasModel
from agent.errors import ConfigError, TemporaryError
from agent.types import GasPrice, Reading

# EIP-1559 constants (London): target is half the gas limit, base fee moves at most 1/8.
# Other chains' own values live in their registry profile (``GasModel``).
ELASTICITY_MULTIPLIER = 2
BASE_FEE_MAX_CHANGE_DENOMINATOR = 8
GWEI = 10**9
WEI_PER_ETH = 10**18


@dataclass(frozen=True, slots=True)
class GasPolicy:
    """Fee configuration, wei per gas. ``priority_percentile`` must be in ``percentiles``."""

    history_blocks: int = 10
    percentiles: tuple[int, ...] = (10, 25, 50, 75, 90)
    priority_percentile: int = 50
    min_priority_fee_wei: int = 0
    max_priority_fee_wei: int = 3 * GWEI
    max_fee_cap_wei: int = 300 * GWEI
    max_age_s: float = 30.0

    def __post_init__(self) -> None:
        if self.priority_percentile not in self.percentiles:
            raise ConfigError("gas.priority_percentile must be one of gas.percentiles")
        if not all(0 <= p <= 100 for p in self.percentiles):
            raise ConfigError("gas.percentiles must be within 0..100")
        if self.min_priority_fee_wei > self.max_priority_fee_wei:
            raise ConfigError("gas.min_priority_fee_wei exceeds gas.max_priority_fee_wei")
        if self.history_blocks < 1:
            raise ConfigError("gas.history_blocks must be at least 1")


def next_base_fee(
    base_fee_wei: int,
    gas_used: int,
    gas_limit: int,
    *,
    elasticity_multiplier: int = ELASTICITY_MULTIPLIER,
    max_change_denominator: int = BASE_FEE_MAX_CHANGE_DENOMINATOR,
) -> int:
    """EIP-1559 base fee of the child block, exactly as clients compute it (integer math).

    The defaults are Ethereum's; OP-stack chains use 6 / 250 (see ``agent.chain.registry``).
    """
    target = gas_limit // elasticity_multiplier
    if target == 0 or gas_used == target:
        return base_fee_wei
    if gas_used > target:
        delta = base_fee_wei * (gas_used - target) // target // max_change_denominator
        return base_fee_wei + max(delta, 1)
    delta = base_fee_wei * (target - gas_used) // target // max_change_denominator
    return base_fee_wei - delta


def holocene_eip1559_params(extra_data: bytes) -> tuple[int, int] | None:
    """``(elasticity, denominator)`` from an OP-stack block's extraData (Holocene onwards).

    The header carries version byte 0 (or 1 since Jovian, which appends a minimum base fee)
    then ``denominator`` and ``elasticity`` as big-endian u32; zeros mean "use the chain's
    pre-Holocene constants". Anything else (Ethereum's free-form extraData) gives ``None``.
    """
    if len(extra_data) not in (9, 17) or extra_data[0] not in (0, 1):
        return None
    denominator = int.from_bytes(extra_data[1:5], "big")
    elasticity = int.from_bytes(extra_data[5:9], "big")
    if denominator == 0 or elasticity == 0:
        return None
    return elasticity, denominator


def model_next_base_fee(model: GasModel, block: Mapping[str, Any]) -> int:
    """The child block's base fee under ``model`` from its parent header ``block``."""
    base_fee = int(block["baseFeePerGas"])
    if model.kind == "arbitrum":
        return base_fee  # ArbOS prices from a backlog, not the parent's fill (see GasModel)
    elasticity = model.elasticity_multiplier
    denominator = model.base_fee_max_change_denominator
    if model.params_in_extra_data:
        published = holocene_eip1559_params(bytes(block.get("extraData") or b""))
        if published is not None:
            elasticity, denominator = published
    return next_base_fee(
        base_fee,
        int(block["gasUsed"]),
        int(block["gasLimit"]),
        elasticity_multiplier=elasticity,
        max_change_denominator=denominator,
    )


def max_fee_per_gas(next_base_fee_wei: int, priority_fee_wei: int, cap_wei: int) -> int:
    """``min(cap, 2 * next_base + priority)``, wei per gas."""
    return min(cap_wei, 2 * next_base_fee_wei + priority_fee_wei)


def gas_cost_usd(gas_units: int, fee_per_gas_wei: int, eth_usd: float) -> float:
    """USD cost of ``gas_units`` at ``fee_per_gas_wei``: exact wei product, float at the end."""
    return gas_units * fee_per_gas_wei / WEI_PER_ETH * eth_usd


class GasOracle:
    """Reads the fee picture for the next block; implements ``agent.chain.tx.FeeOracle``."""

    source = "gas"

    def __init__(
        self,
        w3: AsyncWeb3[Any],
        policy: GasPolicy | None = None,
        *,
        model: GasModel = ETHEREUM_GAS,
        logger: logging.Logger | None = None,
    ) -> None:
        self._w3 = w3
        self.policy = policy if policy is not None else GasPolicy()
        self.model = model
        self._checked_base_fee = False
        self.log = logger if logger is not None else logging.getLogger("agent.chain.gas")
        self._last: Reading[GasPrice] | None = None

    async def gas_price(self) -> GasPrice:
        """Fees for the next block from ``eth_feeHistory`` + the newest block's header."""
        policy = self.policy
        if self.model.kind != "legacy" and not self._checked_base_fee:
            # A pre-London chain (or Anvil --hardfork berlin) has no base fee: price it the
            # legacy way instead of refusing every opportunity for want of a gas price.
            latest = await self._w3.eth.get_block("latest")
            if latest.get("baseFeePerGas") is None:
                self.log.info("gas: the chain has no baseFeePerGas: legacy gas pricing")
                self.model = LEGACY_GAS
            self._checked_base_fee = True
        if self.model.kind == "legacy":
            return await self._legacy_gas_price()
        history = await self._w3.eth.fee_history(
            policy.history_blocks, "latest", list(policy.percentiles)
        )
        base_fees = [int(fee) for fee in history["baseFeePerGas"]]
        if len(base_fees) < 2:
            raise TemporaryError("eth_feeHistory returned no blocks")
        newest = int(history["oldestBlock"]) + len(base_fees) - 2
        block = await self._w3.eth.get_block(newest)
        if block.get("baseFeePerGas") is None:
            raise TemporaryError(
                f"block {newest} has no baseFeePerGas: the chain prices gas the legacy way "
                "(give it a legacy gas model)"
            )
        base_fee = int(block["baseFeePerGas"])
        computed_next = model_next_base_fee(self.model, block)
        reported_next = base_fees[-1]
        if computed_next != reported_next:
            # Anvil with interval mining reports its own estimate; the formula is what counts.
            self.log.debug(
                "gas: next base fee %d (EIP-1559) differs from the node's %d at block %d",
                computed_next,
                reported_next,
                newest,
            )
        percentiles = reward_percentiles(history.get("reward") or [], policy.percentiles)
        raw_priority = percentiles.get(policy.priority_percentile, 0)
        priority = min(max(raw_priority, policy.min_priority_fee_wei), policy.max_priority_fee_wei)
        return GasPrice(
            base_fee_wei=base_fee,
            next_base_fee_wei=computed_next,
            priority_fee_wei=priority,
            max_fee_wei=max_fee_per_gas(computed_next, priority, policy.max_fee_cap_wei),
            block=newest,
            priority_percentiles_wei=percentiles,
        )

    async def _legacy_gas_price(self) -> GasPrice:
        """Legacy (pre-London) fees: one ``gasPrice`` per transaction, no base fee.

        The price is the configured percentile of the gas prices paid in the last
        ``history_blocks`` blocks (median across blocks), never below the node's
        ``eth_gasPrice``, and capped by ``max_fee_cap_wei``. It is reported as the whole
        ``max_fee_wei``, the base fee and the next base fee, with a zero priority fee, so that
        every "expected fee" sum (next base + priority) equals the price paid.
        """
        policy = self.policy
        newest = int(await self._w3.eth.block_number)
        node_price = int(await self._w3.eth.gas_price)
        per_block: list[int] = []
        for number in range(max(0, newest - policy.history_blocks + 1), newest + 1):
            block = await self._w3.eth.get_block(number, full_transactions=True)
            prices = sorted(
                int(tx["gasPrice"])
                for tx in block.get("transactions") or []
                if isinstance(tx, Mapping) and "gasPrice" in tx
            )
            if prices:
                index = min(len(prices) - 1, len(prices) * policy.priority_percentile // 100)
                per_block.append(prices[index])
        observed = int(statistics.median_low(per_block)) if per_block else 0
        price = min(max(node_price, observed), policy.max_fee_cap_wei)
        return GasPrice(
            base_fee_wei=price,
            next_base_fee_wei=price,
            priority_fee_wei=0,
            max_fee_wei=price,
            block=newest,
            legacy=True,
        )

    async def poll(self) -> Reading[GasPrice]:
        """:meth:`gas_price` as a reading; a failure keeps the last value, marked stale."""
        try:
            value = await self.gas_price()
        except Exception as exc:  # any failure of the node or its answer: stale, not fatal
            error = f"{type(exc).__name__}: {exc}"[:300]
            self.log.warning("gas: stale: %s", error)
            last = self._last
            self._last = Reading(
                source=self.source,
                value=last.value if last is not None else None,
                fetched_at=last.fetched_at if last is not None else time.time(),
                max_age_s=self.policy.max_age_s,
                error=error,
            )
            return self._last
        self._last = Reading(self.source, value, time.time(), self.policy.max_age_s)
        return self._last

    def gas_cost_usd(
        self, gas_units: int, gas: GasPrice, eth_usd: float, *, worst_case: bool = False
    ) -> float:
        """USD cost of ``gas_units``: expected (next base + priority) or worst case (max fee)."""
        fee = gas.max_fee_wei if worst_case else gas.next_base_fee_wei + gas.priority_fee_wei
        return gas_cost_usd(gas_units, fee, eth_usd)


def reward_percentiles(
    rewards: Sequence[Sequence[int]], percentiles: Sequence[int]
) -> dict[int, int]:
    """Per requested percentile, the median across blocks of that block's reward (wei/gas).

    Blocks without transactions report zeros for every percentile; they are skipped so quiet
    blocks don't drag the estimate to zero (all-empty history gives 0).
    """
    rows = [[int(v) for v in row] for row in rewards if row and any(int(v) for v in row)]
    result: dict[int, int] = {}
    for i, percentile in enumerate(percentiles):
        column = [row[i] for row in rows if i < len(row)]
        result[percentile] = int(statistics.median_low(column)) if column else 0
    return result
