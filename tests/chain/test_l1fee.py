"""L1 data fees on the Base replica: the Fjord GasPriceOracle at the predeploy, our local
formula and the realised fee of a mined transaction all agree to the wei."""

from __future__ import annotations

import os

import pytest
from eth_abi import encode
from web3 import AsyncHTTPProvider, AsyncWeb3

from agent.chain.l1fee import (
    OpL1FeeParams,
    OpStackL1Fees,
    fastlz_compressed_length,
    fjord_l1_fee,
    fjord_l1_fee_upper_bound,
    unsigned_tx_bytes,
)
from agent.devnet import Devnet
from agent.devnet.jsonrpc import JsonRpc
from agent.devnet.replica import BASE_L1_FEE_PARAMS, place_gas_price_oracle

pytestmark = pytest.mark.chain

# Payloads of the shapes FastLZ treats differently: tiny, incompressible, runs of zeros,
# ABI calldata with repeated words, and long matches (> 262 bytes).
PAYLOADS = [
    b"",
    b"\x02\xf8",
    os.urandom(40),
    os.urandom(700),
    bytes(300),
    bytes.fromhex("a9059cbb") + encode(["address", "uint256"], ["0x" + "11" * 20, 10**18]) * 6,
    (b"abcdefgh" * 100) + os.urandom(50) + (b"abcdefgh" * 40),
]


async def test_oracle_contract_and_local_formula_agree(base_replica: Devnet) -> None:
    w3 = AsyncWeb3(AsyncHTTPProvider(base_replica.rpc_url))
    fees = OpStackL1Fees(w3)

    params = await fees.params()

    assert params == BASE_L1_FEE_PARAMS
    for payload in PAYLOADS:
        assert await fees.l1_fee(payload) == fjord_l1_fee(payload, params), payload[:16].hex()
        assert await fees.l1_fee_upper_bound(len(payload)) == fjord_l1_fee_upper_bound(
            len(payload), params
        )
    # The "upper bound" is Fjord's practical one: random bytes can exceed it (1 byte per 32).
    noise = PAYLOADS[3]
    assert await fees.l1_fee(noise) > await fees.l1_fee_upper_bound(len(noise))


def test_fastlz_length_compresses_repetition_and_not_noise() -> None:
    noise = os.urandom(1000)
    assert fastlz_compressed_length(noise) > 1000  # literal runs cost a byte per 32
    assert fastlz_compressed_length(bytes(1000)) < 40
    assert fastlz_compressed_length(b"") == 0


async def test_realised_fee_of_a_mined_transaction_is_the_oracles(base_replica: Devnet) -> None:
    w3 = AsyncWeb3(AsyncHTTPProvider(base_replica.rpc_url))
    fees = OpStackL1Fees(w3)
    sender, receiver = (await w3.eth.accounts)[:2]
    calldata = os.urandom(200)
    tx_hash = await w3.eth.send_transaction(
        {"from": sender, "to": receiver, "value": 1, "data": calldata, "gas": 100_000}
    )
    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash)
    mined = await w3.eth.get_transaction(tx_hash)
    unsigned = unsigned_tx_bytes(mined)

    # Anvil's receipt has no l1Fee: the oracle at the receipt's block prices the mined bytes.
    realised = await fees.realised_l1_fee(dict(receipt))

    assert "l1Fee" not in receipt
    assert realised == fjord_l1_fee(unsigned, BASE_L1_FEE_PARAMS) > 0
    # A node that reports l1Fee (op-geth) is believed as is.
    assert await fees.realised_l1_fee({**dict(receipt), "l1Fee": "0x2a"}) == 42


async def test_a_new_l1_base_fee_changes_the_fee(base_replica: Devnet) -> None:
    w3 = AsyncWeb3(AsyncHTTPProvider(base_replica.rpc_url))
    fees = OpStackL1Fees(w3)
    payload = os.urandom(300)
    before = await fees.l1_fee(payload)
    rpc = JsonRpc(base_replica.rpc_url)
    dearer = OpL1FeeParams(
        l1_base_fee_wei=BASE_L1_FEE_PARAMS.l1_base_fee_wei * 10,
        blob_base_fee_wei=BASE_L1_FEE_PARAMS.blob_base_fee_wei,
        base_fee_scalar=BASE_L1_FEE_PARAMS.base_fee_scalar,
        blob_base_fee_scalar=BASE_L1_FEE_PARAMS.blob_base_fee_scalar,
    )
    try:
        await place_gas_price_oracle(rpc, dearer)
        after = await fees.l1_fee(payload)
    finally:
        await place_gas_price_oracle(rpc, BASE_L1_FEE_PARAMS)
        await rpc.aclose()
    assert after == fjord_l1_fee(payload, dearer)
    assert after > 9 * before
