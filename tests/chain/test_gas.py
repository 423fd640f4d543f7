"""Gas oracle on the devnet: agrees with eth_feeHistory and the mined blocks; caps applied."""

from __future__ import annotations

import statistics
from collections.abc import AsyncIterator

import pytest
from web3 import AsyncHTTPProvider, AsyncWeb3

from agent.chain.gas import GWEI, GasOracle, GasPolicy, gas_cost_usd, next_base_fee
from agent.devnet import Devnet
from agent.devnet.node import AnvilNode

pytestmark = pytest.mark.chain

TIPS_GWEI = (1, 2, 3)  # per block k the three transactions tip (1+k, 2+k, 3+k) gwei
SMALL_GAS_LIMIT = 100_000  # three 21,000-gas transfers overshoot the 50,000 target


@pytest.fixture
async def busy_chain(devnet: Devnet, w3: AsyncWeb3) -> AsyncIterator[AsyncWeb3]:
    """Three blocks of three transfers each with known tips; the first two under a tiny gas
    limit (over target: the base fee rises), the last under the normal limit (it falls)."""
    original_limit = int((await w3.eth.get_block("latest"))["gasLimit"])
    senders = [address for address, _ in devnet.accounts[1:4]]
    await devnet.call("evm_setAutomine", [False])
    try:
        for k in range(3):
            limit = SMALL_GAS_LIMIT if k < 2 else original_limit
            await devnet.call("evm_setBlockGasLimit", [hex(limit)])
            for sender, tip in zip(senders, TIPS_GWEI, strict=True):
                await devnet.call(
                    "eth_sendTransaction",
                    [
                        {
                            "from": sender,
                            "to": senders[0],
                            "value": hex(1),
                            "gas": hex(21_000),
                            "maxPriorityFeePerGas": hex((tip + k) * GWEI),
                            "maxFeePerGas": hex(500 * GWEI),
                        }
                    ],
                )
            await devnet.call("evm_mine", [])
        yield w3
    finally:
        await devnet.call("evm_setBlockGasLimit", [hex(original_limit)])
        await devnet.call("evm_setAutomine", [True])


async def test_oracle_agrees_with_fee_history_and_next_block(
    devnet: Devnet, busy_chain: AsyncWeb3
) -> None:
    w3 = busy_chain
    oracle = GasOracle(w3, GasPolicy(history_blocks=3, max_priority_fee_wei=10 * GWEI))

    gas = await oracle.gas_price()

    history = await w3.eth.fee_history(3, "latest", [10, 25, 50, 75, 90])
    latest = await w3.eth.get_block("latest")
    assert gas.block == latest["number"]
    assert gas.base_fee_wei == latest["baseFeePerGas"] == history["baseFeePerGas"][-2]
    # The EIP-1559 formula equals the node's own next base fee...
    assert gas.next_base_fee_wei == history["baseFeePerGas"][-1]
    # ...and the base fee of the block actually mined next.
    await devnet.mine(1)
    assert (await w3.eth.get_block("latest"))["baseFeePerGas"] == gas.next_base_fee_wei
    # Percentiles: median over non-empty blocks of feeHistory's rewards. Our blocks tipped
    # (1+k, 2+k, 3+k) gwei with equal gas, so p50 per block is 2+k gwei -> median 3 gwei.
    non_empty = [row for row in history["reward"] if any(row)]
    assert len(non_empty) == 3  # exactly our three blocks
    for i, p in enumerate((10, 25, 50, 75, 90)):
        assert gas.priority_percentiles_wei[p] == statistics.median_low(r[i] for r in non_empty)
    assert gas.priority_percentiles_wei[50] == 3 * GWEI
    assert gas.priority_fee_wei == 3 * GWEI
    assert gas.max_fee_wei == 2 * gas.next_base_fee_wei + 3 * GWEI


async def test_base_fee_formula_tracks_full_and_empty_blocks(
    devnet: Devnet, busy_chain: AsyncWeb3
) -> None:
    w3 = busy_chain
    await devnet.mine(1)  # the child of the last busy block
    latest = int((await w3.eth.get_block("latest"))["number"])
    risen = fallen = 0
    # Parents: the three busy blocks. (The first block after evm_revert is skipped as a
    # parent-child pair: Anvil derives its base fee from the pre-revert chain tip.)
    for number in range(latest - 3, latest):
        parent, child = await w3.eth.get_block(number), await w3.eth.get_block(number + 1)
        predicted = next_base_fee(parent["baseFeePerGas"], parent["gasUsed"], parent["gasLimit"])
        assert predicted == child["baseFeePerGas"]
        risen += predicted > parent["baseFeePerGas"]
        fallen += predicted < parent["baseFeePerGas"]
    assert risen >= 1 and fallen >= 1  # both branches of the rule were exercised


async def test_fee_caps_and_priority_clamps_applied(busy_chain: AsyncWeb3) -> None:
    w3 = busy_chain
    clamped_high = await GasOracle(
        w3, GasPolicy(history_blocks=3, max_priority_fee_wei=2 * GWEI)
    ).gas_price()
    assert clamped_high.priority_fee_wei == 2 * GWEI

    clamped_low = await GasOracle(
        w3,
        GasPolicy(history_blocks=3, min_priority_fee_wei=5 * GWEI, max_priority_fee_wei=9 * GWEI),
    ).gas_price()
    assert clamped_low.priority_fee_wei == 5 * GWEI

    p90 = await GasOracle(
        w3, GasPolicy(history_blocks=3, priority_percentile=90, max_priority_fee_wei=50 * GWEI)
    ).gas_price()
    assert p90.priority_fee_wei == 4 * GWEI  # per block p90 = 3+k gwei -> median 4 gwei

    cap = clamped_high.next_base_fee_wei + GWEI
    capped = await GasOracle(
        w3, GasPolicy(history_blocks=3, max_priority_fee_wei=2 * GWEI, max_fee_cap_wei=cap)
    ).gas_price()
    assert capped.max_fee_wei == cap < 2 * capped.next_base_fee_wei + capped.priority_fee_wei


async def test_usd_cost_and_reading(busy_chain: AsyncWeb3) -> None:
    assert gas_cost_usd(100_000, 20 * GWEI, 3000.0) == pytest.approx(6.0)
    oracle = GasOracle(busy_chain)
    reading = await oracle.poll()
    assert reading.value is not None and not reading.is_stale()
    gas = reading.value
    expected = 150_000 * (gas.next_base_fee_wei + gas.priority_fee_wei) / 10**18 * 2500.0
    assert oracle.gas_cost_usd(150_000, gas, 2500.0) == pytest.approx(expected)
    worst = oracle.gas_cost_usd(150_000, gas, 2500.0, worst_case=True)
    assert worst == pytest.approx(150_000 * gas.max_fee_wei / 10**18 * 2500.0)


async def test_unreachable_node_gives_a_stale_reading_not_an_exception() -> None:
    w3 = AsyncWeb3(AsyncHTTPProvider("http://127.0.0.1:9"))  # nothing listens on discard
    try:
        reading = await GasOracle(w3).poll()
    finally:
        await w3.provider.disconnect()
    assert reading.is_stale() and reading.value is None and reading.error


async def test_legacy_chain_is_priced_from_recent_gas_prices() -> None:
    """Anvil before London has no base fee: the oracle prices gas from what blocks paid."""
    async with AnvilNode(extra_args=["--hardfork", "berlin"]) as node:
        w3 = AsyncWeb3(AsyncHTTPProvider(node.rpc_url))
        accounts = await w3.eth.accounts
        for price_gwei in (3, 5, 7):
            await w3.eth.send_transaction(
                {"from": accounts[1], "to": accounts[2], "value": 1, "gasPrice": price_gwei * GWEI}
            )
        oracle = GasOracle(w3, GasPolicy(history_blocks=3, priority_percentile=50))

        gas = await oracle.gas_price()

        latest = await w3.eth.get_block("latest")
        assert latest.get("baseFeePerGas") is None
        assert gas.legacy
        assert gas.max_fee_wei == 5 * GWEI  # the median block's price, above eth_gasPrice
        assert gas.next_base_fee_wei + gas.priority_fee_wei == gas.max_fee_wei
