"""L1 data fees on the Base replica (the Fjord GasPriceOracle at the OP-stack predeploy):
the whole agent, in fork mode, configured for Base.

* An arbitrage whose L2 gas is cheap but whose L1 data fee is larger than its profit is refused
  ``gas_to_profit``.
* With Base's usual L1 fee inputs the same arbitrage fills, and the fill carries the predicted
  and realised L2 and L1 costs; the L1 fee predicted equals the one the oracle charges the mined
  transaction at its block.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
from eth_utils import to_checksum_address
from web3 import AsyncHTTPProvider, AsyncWeb3

from agent.chain.arb_executor import encode_deployment, load_arb_executor_artifact
from agent.chain.l1fee import (
    ArbitrumL1Fees,
    OperatorFeeParams,
    OpStackL1Fees,
    fjord_l1_fee,
    unsigned_tx_bytes,
)
from agent.chain.registry import addresses_for
from agent.config.models import AgentConfig
from agent.devnet import Devnet
from agent.devnet.replica import (
    ARBITRUM_L1_FEE_PARAMS,
    BASE_L1_FEE_PARAMS,
    node_interface_gas_for_l1,
    place_gas_price_oracle,
    place_node_interface,
)
from agent.devnet.traders import swap_v2
from agent.types import Fill
from tests.conftest import reverted
from tests.e2e.harness import AGENT_ACCOUNT, GAPPER, AgentRun, running_agent, write_config
from tests.e2e.test_replica_e2e import _call, _send_as, replica_tree

# 1 ETH per L1 gas: an L1 data fee of several ETH for an arbitrage transaction.
RUINOUS_L1_BASE_FEE_WEI = 10**18
# Arbitrum: 0.1 ETH per calldata unit, as ruinous.
RUINOUS_L1_PRICE_PER_UNIT_WEI = 10**17


@pytest.fixture
async def base(base_replica: Devnet) -> AsyncIterator[Devnet]:
    async with reverted(base_replica):
        yield base_replica


async def arb_executor_on(replica: Devnet) -> str:
    """An ArbExecutor deployed by the agent's account on ``replica``, holding 40 WETH and
    100,000 USDC."""
    rpc = replica.rpc
    assert rpc is not None
    reg = addresses_for(replica.name)
    hashes = {
        dex.factory: replica.v2_pair_init_code_hashes.get(name, dex.pair_init_code_hash)  # type: ignore[attr-defined]
        for name, dex in reg.v2_dexes().items()
    }
    creation = encode_deployment(
        load_arb_executor_artifact(), reg.v3_dexes()["uniswap_v3"].factory, hashes
    )
    receipt = await _send_as(rpc, AGENT_ACCOUNT, {"data": "0x" + creation.hex()})
    executor = to_checksum_address(receipt["contractAddress"])
    for symbol, amount in (("WETH", 40 * 10**18), ("USDC", 100_000 * 10**6)):
        data = _call("transfer(address,uint256)", ["address", "uint256"], [executor, amount])
        await _send_as(rpc, AGENT_ACCOUNT, {"to": reg.tokens[symbol].address, "data": data})
    return executor


def arbitrage_config(
    replica: Devnet, workdir: Path, executor: str | None, mode: str = "fork"
) -> AgentConfig:
    """The agent on ``replica`` with only the V2 WETH/USDC arbitrage enabled."""
    tree = replica_tree(
        replica,
        workdir,
        tokens=["WETH", "USDC"],
        arb_executor=executor or "",
        mode=mode,
        strategies={
            "arbitrage": {
                "enabled": True,
                "dexes": ["uniswap_v2", "sushiswap"],
                "min_profit_usd": 1.0,
                "max_input_usd": 100_000.0,
            }
        },
        dexes=["uniswap_v2", "sushiswap"],
    )
    if mode == "paper":
        tree["execution"]["paper_balances"] = {"WETH": "40", "USDC": "100000"}
    return write_config(workdir / "agent.toml", tree, {})


async def sushiswap_gap(replica: Devnet) -> int:
    """Open a SushiSwap WETH/USDC gap (10 WETH sold); its block."""
    rpc = replica.rpc
    assert rpc is not None
    reg = addresses_for(replica.name)
    gap = await swap_v2(
        rpc,
        dex="sushiswap",
        router=reg.v2_dexes()["sushiswap"].router02 or "",
        trader=GAPPER,
        path=[reg.weth, reg.tokens["USDC"].address],
        amount_in=10 * 10**18,
    )
    return gap.block


async def refused_then_filled(
    agent: AgentRun, replica: Devnet, reason: str, bearable: Callable[[], Awaitable[None]]
) -> Fill:
    """A gap the current fees make not worth taking is refused for ``reason``; once
    ``bearable`` has set the usual fees (the next block), the same gap fills as predicted."""
    refused = await agent.tick(await sushiswap_gap(replica))
    assert refused.started == 0
    assert set(refused.rejected) == {reason}
    await bearable()
    await replica.call("evm_mine", [])
    report = await agent.tick()
    assert report.started == 1, report.rejected
    (fill,) = agent.parts.engine.report.fills
    assert fill.profit > 0 and fill.profit == fill.predicted_profit
    return fill


async def test_l1_fee_decides_and_is_booked_on_the_base_replica(
    base: Devnet, workdir: Path
) -> None:
    rpc = base.rpc
    assert rpc is not None
    executor = await arb_executor_on(base)
    cfg = arbitrage_config(base, workdir, executor)
    await place_gas_price_oracle(
        rpc, replace(BASE_L1_FEE_PARAMS, l1_base_fee_wei=RUINOUS_L1_BASE_FEE_WEI)
    )
    async with running_agent(cfg) as agent:
        # Then Base's usual L1 inputs (the next L1 block): the same gap is worth taking.
        fill = await refused_then_filled(
            agent, base, "gas_to_profit", partial(place_gas_price_oracle, rpc, BASE_L1_FEE_PARAMS)
        )
        stored = (await agent.parts.journal.list_fills())[0]

    assert fill.tx_hash is not None
    w3 = AsyncWeb3(AsyncHTTPProvider(base.rpc_url))
    mined = await w3.eth.get_transaction(fill.tx_hash)  # type: ignore[arg-type]
    receipt = await w3.eth.get_transaction_receipt(fill.tx_hash)  # type: ignore[arg-type]
    oracle_fee = await OpStackL1Fees(w3).l1_fee(
        unsigned_tx_bytes(mined), int(receipt["blockNumber"])
    )
    # Realised L1: the oracle's charge for the mined transaction (Anvil gives no l1Fee);
    # predicted L1: the same figure, to the wei (same bytes, same L1 inputs).
    assert (
        fill.l1_fee_wei == oracle_fee == fjord_l1_fee(unsigned_tx_bytes(mined), BASE_L1_FEE_PARAMS)
    )
    assert fill.predicted_l1_fee_wei == fill.l1_fee_wei > 0
    # L2: gas used x effective price, under the prediction at the max fee.
    l2_paid = int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])
    assert fill.gas_cost_wei == l2_paid + fill.l1_fee_wei
    assert 0 < l2_paid <= fill.predicted_gas_cost_wei
    # The journal keeps all four.
    assert (
        stored.gas_cost_wei,
        stored.l1_fee_wei,
        stored.predicted_gas_cost_wei,
        stored.predicted_l1_fee_wei,
    ) == (
        fill.gas_cost_wei,
        fill.l1_fee_wei,
        fill.predicted_gas_cost_wei,
        fill.predicted_l1_fee_wei,
    )


async def test_an_l1_fee_that_cannot_be_priced_refuses_the_arbitrage(
    base: Devnet, workdir: Path
) -> None:
    """No oracle answer (here: no code at the predeploy): the cost is unknown, and the agent
    refuses rather than trade blind."""
    rpc = base.rpc
    assert rpc is not None
    executor = await arb_executor_on(base)
    cfg = arbitrage_config(base, workdir, executor)
    async with running_agent(cfg) as agent:
        await rpc.call("anvil_setCode", ["0x420000000000000000000000000000000000000F", "0x"])
        report = await agent.tick(await sushiswap_gap(base))
        assert report.started == 0
        assert set(report.rejected) == {"gas_to_profit"}
        assert agent.parts.engine.report.fills == []


@pytest.fixture
async def arbitrum(arbitrum_replica: Devnet) -> AsyncIterator[Devnet]:
    async with reverted(arbitrum_replica):
        yield arbitrum_replica


async def test_l1_part_decides_and_is_booked_on_the_arbitrum_replica(
    arbitrum: Devnet, workdir: Path
) -> None:
    """Arbitrum: the NodeInterface (the replica contract at 0xC8) prices the L1 part; an
    arbitrage it makes unprofitable is refused, a profitable one books predicted and realised
    L1 and L2 (Anvil's receipts lack gasUsedForL1: the NodeInterface at the receipt's block)."""
    rpc = arbitrum.rpc
    assert rpc is not None
    executor = await arb_executor_on(arbitrum)
    cfg = arbitrage_config(arbitrum, workdir, executor)
    await place_node_interface(
        rpc, replace(ARBITRUM_L1_FEE_PARAMS, l1_price_per_unit_wei=RUINOUS_L1_PRICE_PER_UNIT_WEI)
    )
    async with running_agent(cfg) as agent:
        fill = await refused_then_filled(
            agent,
            arbitrum,
            "gas_to_profit",
            partial(place_node_interface, rpc, ARBITRUM_L1_FEE_PARAMS),
        )
        stored = (await agent.parts.journal.list_fills())[0]

    assert fill.tx_hash is not None
    w3 = AsyncWeb3(AsyncHTTPProvider(arbitrum.rpc_url))
    mined = await w3.eth.get_transaction(fill.tx_hash)  # type: ignore[arg-type]
    receipt = await w3.eth.get_transaction_receipt(fill.tx_hash)  # type: ignore[arg-type]
    calldata = bytes(mined["input"])
    at_block = await ArbitrumL1Fees(w3).estimate(
        str(mined["to"]), calldata, int(receipt["blockNumber"])
    )
    base_fee = at_block.base_fee_wei
    # Realised: gasEstimateForL1 x baseFee at the receipt's block, by Nitro's formula.
    assert fill.l1_fee_wei == at_block.fee_wei > 0
    assert at_block.gas_for_l1 == node_interface_gas_for_l1(
        calldata, ARBITRUM_L1_FEE_PARAMS, base_fee
    )
    # Predicted from the same calldata a block earlier: equal but for the base fee's rounding.
    assert abs(fill.predicted_l1_fee_wei - fill.l1_fee_wei) < 2 * base_fee
    l2_paid = int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])
    assert fill.gas_cost_wei == l2_paid + fill.l1_fee_wei
    assert 0 < l2_paid <= fill.predicted_gas_cost_wei
    assert (stored.l1_fee_wei, stored.predicted_l1_fee_wei) == (
        fill.l1_fee_wei,
        fill.predicted_l1_fee_wei,
    )


async def test_operator_fee_decides_and_is_booked_on_the_base_replica(
    base: Devnet, workdir: Path
) -> None:
    """OP stack since Isthmus: an operator fee that eats the edge refuses the arbitrage (it is
    an L2 cost: unprofitable after L2 costs, as dear L2 gas would be); a bearable one is
    predicted and paid with L2 execution."""
    rpc = base.rpc
    assert rpc is not None
    executor = await arb_executor_on(base)
    cfg = arbitrage_config(base, workdir, executor)
    ruinous = OperatorFeeParams(scalar=0, constant_wei=10**18)
    bearable = OperatorFeeParams(scalar=1_000_000, constant_wei=10**14)
    await place_gas_price_oracle(rpc, BASE_L1_FEE_PARAMS, operator=ruinous)
    async with running_agent(cfg) as agent:
        fill = await refused_then_filled(
            agent,
            base,
            "unprofitable",
            partial(place_gas_price_oracle, rpc, BASE_L1_FEE_PARAMS, operator=bearable),
        )

    assert fill.tx_hash is not None
    w3 = AsyncWeb3(AsyncHTTPProvider(base.rpc_url))
    receipt = await w3.eth.get_transaction_receipt(fill.tx_hash)  # type: ignore[arg-type]
    gas_used = int(receipt["gasUsed"])
    execution = gas_used * int(receipt["effectiveGasPrice"])
    # L2 = execution + operator fee (gasUsed x 1 wei + 1e14), the L1 fee beside it.
    assert fill.gas_cost_wei - fill.l1_fee_wei == execution + gas_used + 10**14
    assert fill.l1_fee_wei > 0
    assert fill.predicted_gas_cost_wei >= fill.gas_cost_wei - fill.l1_fee_wei


async def test_paper_fills_pay_the_predicted_l1_fee(base: Devnet, workdir: Path) -> None:
    """Paper mode on Base prices the L1 fee as live does: it refuses the arbitrage the L1 fee
    ruins, and a paper fill pays its predicted L2 gas and L1 fee."""
    rpc = base.rpc
    assert rpc is not None
    cfg = arbitrage_config(base, workdir, None, mode="paper")
    await place_gas_price_oracle(
        rpc, replace(BASE_L1_FEE_PARAMS, l1_base_fee_wei=RUINOUS_L1_BASE_FEE_WEI)
    )
    async with running_agent(cfg, mode="paper") as agent:
        fill = await refused_then_filled(
            agent, base, "gas_to_profit", partial(place_gas_price_oracle, rpc, BASE_L1_FEE_PARAMS)
        )
        stored = (await agent.parts.journal.list_fills())[0]

    assert fill.mode == "paper" and fill.profit > 0
    assert fill.predicted_l1_fee_wei > 0 and fill.predicted_gas_cost_wei > 0
    assert fill.l1_fee_wei == fill.predicted_l1_fee_wei
    assert fill.gas_cost_wei == fill.predicted_gas_cost_wei + fill.predicted_l1_fee_wei
    assert (stored.gas_cost_wei, stored.l1_fee_wei) == (fill.gas_cost_wei, fill.l1_fee_wei)
