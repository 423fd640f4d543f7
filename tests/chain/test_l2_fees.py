"""What L2s charge beyond gas x price, on the replicas: Arbitrum's NodeInterface (the replica
contract at 0xC8 against its documented formula, and the realised L1 part of a mined
transaction) and the OP stack's Isthmus operator fee (the replica GasPriceOracle)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest
from eth_abi import decode, encode
from eth_utils import keccak
from web3 import AsyncHTTPProvider, AsyncWeb3

from agent.chain.l1fee import (
    ArbitrumL1Fees,
    OperatorFeeParams,
    OpStackL1Fees,
    operator_fee,
    unsigned_tx_bytes,
)
from agent.chain.tx import receipt_from_web3
from agent.devnet import Devnet
from agent.devnet.jsonrpc import JsonRpc
from agent.devnet.replica import (
    ARBITRUM_L1_FEE_PARAMS,
    BASE_L1_FEE_PARAMS,
    node_interface_gas_for_l1,
    node_interface_l1_cost_wei,
    place_gas_price_oracle,
    place_node_interface,
    stand_in_node_interface,
)
from agent.execution.settlement import with_l1_fees

pytestmark = pytest.mark.chain

PAYLOADS = [
    b"",
    os.urandom(40),
    os.urandom(700),
    bytes(300),
    bytes.fromhex("a9059cbb") + encode(["address", "uint256"], ["0x" + "11" * 20, 10**18]) * 6,
]
TARGET = "0x" + "22" * 20


@asynccontextmanager
async def _web3_on(replica: Devnet) -> AsyncIterator[AsyncWeb3[Any]]:
    """A web3 on ``replica``, reverted to its state before the test."""
    snapshot = await replica.snapshot()
    w3 = AsyncWeb3(AsyncHTTPProvider(replica.rpc_url))
    try:
        yield w3
    finally:
        await w3.provider.disconnect()
        await replica.revert(snapshot)


@pytest.fixture
async def arbitrum(arbitrum_replica: Devnet) -> AsyncIterator[AsyncWeb3[Any]]:
    async with _web3_on(arbitrum_replica) as w3:
        yield w3


@pytest.fixture
async def base(base_replica: Devnet) -> AsyncIterator[AsyncWeb3[Any]]:
    async with _web3_on(base_replica) as w3:
        yield w3


async def _send(w3: AsyncWeb3[Any], data: bytes) -> tuple[Any, Any]:
    sender = (await w3.eth.accounts)[1]
    tx_hash = await w3.eth.send_transaction(
        {"from": sender, "to": TARGET, "value": 1, "data": data, "gas": 200_000}
    )
    return await w3.eth.wait_for_transaction_receipt(tx_hash), await w3.eth.get_transaction(tx_hash)


async def test_node_interface_replica_follows_nitros_formula(arbitrum: AsyncWeb3[Any]) -> None:
    fees = ArbitrumL1Fees(arbitrum)
    for payload in PAYLOADS:
        estimate = await fees.estimate(TARGET, payload)
        assert estimate.base_fee_wei >= ARBITRUM_L1_FEE_PARAMS.min_base_fee_wei
        assert estimate.l1_base_fee_estimate_wei == ARBITRUM_L1_FEE_PARAMS.l1_price_per_unit_wei
        assert estimate.gas_for_l1 == node_interface_gas_for_l1(
            payload, ARBITRUM_L1_FEE_PARAMS, estimate.base_fee_wei
        )
        assert estimate.fee_wei == estimate.gas_for_l1 * estimate.base_fee_wei > 0
    # Incompressible calldata costs more L1 than the same length of zeros.
    noise, zeros = (
        await fees.estimate(TARGET, os.urandom(300)),
        await fees.estimate(TARGET, bytes(300)),
    )
    assert noise.gas_for_l1 > zeros.gas_for_l1


async def test_gas_estimate_components_pads_for_congestion(arbitrum: AsyncWeb3[Any]) -> None:
    """``gasEstimateComponents``, the NodeInterface's full estimate, divides the same padded
    L1 cost by 7/8 of the base fee (Nitro's GetPosterGas in estimation mode)."""
    payload = os.urandom(200)
    call = keccak(text="gasEstimateComponents(address,bool,bytes)")[:4] + encode(
        ["address", "bool", "bytes"], [TARGET, False, payload]
    )
    raw = await arbitrum.eth.call(
        {"to": "0x00000000000000000000000000000000000000C8", "data": call}
    )
    total, for_l1, base_fee, l1_price = decode(["uint64", "uint64", "uint256", "uint256"], raw)
    one = await ArbitrumL1Fees(arbitrum).estimate(TARGET, payload)
    assert (base_fee, l1_price) == (one.base_fee_wei, one.l1_base_fee_estimate_wei)
    congested = max(base_fee * 7 // 8, ARBITRUM_L1_FEE_PARAMS.min_base_fee_wei)
    padded_cost = node_interface_l1_cost_wei(payload, ARBITRUM_L1_FEE_PARAMS)
    assert for_l1 == padded_cost // congested >= one.gas_for_l1
    assert total > for_l1


async def test_realised_l1_part_on_arbitrum(arbitrum: AsyncWeb3[Any]) -> None:
    fees = ArbitrumL1Fees(arbitrum)
    calldata = os.urandom(250)
    receipt, mined = await _send(arbitrum, calldata)
    block = int(receipt["blockNumber"])

    # Anvil's receipt has no gasUsedForL1: the NodeInterface at the receipt's block prices the
    # mined calldata, booked on top of gasUsed (the node did not charge it).
    assert "gasUsedForL1" not in receipt
    at_block = await fees.estimate(TARGET, bytes(mined["input"]), block)
    (settled,) = await with_l1_fees([receipt_from_web3(receipt)], fees)
    assert settled.l1_fee_wei == await fees.realised_l1_fee(dict(receipt)) == at_block.fee_wei > 0
    assert settled.gas_cost_wei == int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])
    assert settled.operator_fee_wei == 0

    # A Nitro node reports gasUsedForL1: that much of gasUsed paid for L1, at the same price.
    nitro = {**dict(receipt), "gasUsedForL1": hex(5_000)}
    split = receipt_from_web3(nitro)
    price = int(receipt["effectiveGasPrice"])
    assert split.l1_gas_used == 5_000
    assert split.l1_fee_wei == 5_000 * price == await fees.realised_l1_fee(nitro)
    assert split.gas_cost_wei + split.l1_fee_wei == int(receipt["gasUsed"]) * price


async def test_isthmus_operator_fee_on_the_base_replica(
    base: AsyncWeb3[Any], base_replica: Devnet
) -> None:
    fees = OpStackL1Fees(base)
    rpc = JsonRpc(base_replica.rpc_url)
    try:
        # Base: Isthmus is active and its operator fee is zero.
        assert await fees.operator_fee(150_000) == 0
        isthmus = OperatorFeeParams(scalar=2_000_000, constant_wei=10**12)
        await place_gas_price_oracle(rpc, BASE_L1_FEE_PARAMS, operator=isthmus)
        assert await fees.operator_fee(150_000) == operator_fee(150_000, isthmus)
        assert operator_fee(150_000, isthmus) == 150_000 * 2 + 10**12
        # An oracle whose isIsthmus() is false charges none, whatever its parameters.
        pre_isthmus = "0x" + f"{1 | (1 << 8):064x}"  # Ecotone and Fjord only
        await rpc.call("anvil_setStorageAt", [fees.oracle, "0x0", pre_isthmus])
        assert await fees.operator_fee(150_000) == 0
        await place_gas_price_oracle(rpc, BASE_L1_FEE_PARAMS, operator=isthmus)
        predicted = await fees.predict(TARGET, os.urandom(100), 150_000)
        assert predicted.operator_fee_wei == operator_fee(150_000, isthmus)

        # Realised: a mined transaction's fee at its block (Anvil reports no operator fields),
        # or from op-geth's receipt fields under the fork of that block.
        receipt, mined = await _send(base, os.urandom(100))
        (settled,) = await with_l1_fees([receipt_from_web3(receipt)], fees)
        gas_used, price = int(receipt["gasUsed"]), int(receipt["effectiveGasPrice"])
        assert settled.operator_fee_wei == operator_fee(gas_used, isthmus)
        assert settled.gas_cost_wei == gas_used * price + operator_fee(gas_used, isthmus)
        assert settled.l1_fee_wei == await fees.l1_fee(unsigned_tx_bytes(mined))
        reported = {
            **dict(receipt),
            "operatorFeeScalar": hex(3_000_000),
            "operatorFeeConstant": hex(7),
        }
        (from_fields,) = await with_l1_fees([receipt_from_web3(reported)], fees)
        assert from_fields.operator_fee_wei == gas_used * 3 + 7

        jovian = OperatorFeeParams(scalar=5, constant_wei=0, jovian=True)
        await place_gas_price_oracle(rpc, BASE_L1_FEE_PARAMS, operator=jovian)
        assert await fees.operator_fee(150_000) == 150_000 * 5 * 100
        receipt, _ = await _send(base, os.urandom(100))
        jovian_fields = {**dict(receipt), "operatorFeeScalar": hex(5), "operatorFeeConstant": "0x0"}
        (under_jovian,) = await with_l1_fees([receipt_from_web3(jovian_fields)], fees)
        assert under_jovian.operator_fee_wei == int(receipt["gasUsed"]) * 5 * 100
    finally:
        await rpc.aclose()


async def test_a_fork_of_arbitrum_gets_a_node_interface_stand_in(
    arbitrum: AsyncWeb3[Any], arbitrum_replica: Devnet
) -> None:
    """A local fork of Arbitrum (``dry-run --fork-url``) has no code at 0xC8 (the real
    NodeInterface is virtual): the rehearsal puts the replica's there, priced as upstream."""
    node_interface = "0x00000000000000000000000000000000000000C8"
    upstream = JsonRpc(arbitrum_replica.rpc_url)
    upstream_price = 3 * ARBITRUM_L1_FEE_PARAMS.l1_price_per_unit_wei
    try:
        await place_node_interface(
            upstream, replace(ARBITRUM_L1_FEE_PARAMS, l1_price_per_unit_wei=upstream_price)
        )
        async with Devnet(
            name="arbitrum", chain_id=42161, fork_url=arbitrum_replica.rpc_url, deployments_dir=None
        ) as fork:
            assert fork.rpc is not None
            await fork.call("anvil_setCode", [node_interface, "0x"])  # as on a real chain's fork

            done = await stand_in_node_interface(fork.rpc, upstream, "arbitrum")

            assert done is not None and str(upstream_price) in done
            forked = AsyncWeb3(AsyncHTTPProvider(fork.rpc_url))
            estimate = await ArbitrumL1Fees(forked).estimate(TARGET, os.urandom(100))
            await forked.provider.disconnect()
            assert estimate.l1_base_fee_estimate_wei == upstream_price
            assert estimate.fee_wei > 0
            # Code there already (this fork, or a fork of a replica): nothing to do.
            assert await stand_in_node_interface(fork.rpc, upstream, "arbitrum") is None
            assert await stand_in_node_interface(fork.rpc, upstream, "base") is None
    finally:
        await upstream.aclose()
