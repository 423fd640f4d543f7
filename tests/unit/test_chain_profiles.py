"""Chain profiles: each chain's own EIP-1559 parameters drive the next base fee."""

from __future__ import annotations

from agent.chain.gas import holocene_eip1559_params, model_next_base_fee, next_base_fee
from agent.chain.registry import OP_GAS_PRICE_ORACLE, chain_profile

GWEI = 10**9


def test_ethereum_full_block_raises_base_fee_by_an_eighth() -> None:
    block = {"baseFeePerGas": 8 * GWEI, "gasUsed": 30_000_000, "gasLimit": 30_000_000}
    assert model_next_base_fee(chain_profile("ethereum").gas, block) == 9 * GWEI


def test_op_stack_full_block_uses_elasticity_6_and_denominator_250() -> None:
    # target = limit / 6; a full block is 5 targets over: +5/250 = +2 %.
    block = {"baseFeePerGas": 10**9, "gasUsed": 60_000_000, "gasLimit": 60_000_000}
    assert model_next_base_fee(chain_profile("base").gas, block) == 1_020_000_000
    # Ethereum's constants would have said +12.5 %: the gap the profile closes.
    assert next_base_fee(10**9, 60_000_000, 60_000_000) == 1_125_000_000


def test_op_stack_empty_block_lowers_base_fee_by_0_4_percent() -> None:
    block = {"baseFeePerGas": 10**9, "gasUsed": 0, "gasLimit": 60_000_000}
    assert model_next_base_fee(chain_profile("optimism").gas, block) == 996_000_000


def test_holocene_header_parameters_override_the_constants() -> None:
    extra = bytes([0]) + (50).to_bytes(4, "big") + (4).to_bytes(4, "big")
    assert holocene_eip1559_params(extra) == (4, 50)
    block = {
        "baseFeePerGas": 10**9,
        "gasUsed": 60_000_000,
        "gasLimit": 60_000_000,
        "extraData": extra,
    }
    # target = limit / 4; full = 3 targets over: +3/50 = +6 %.
    assert model_next_base_fee(chain_profile("base").gas, block) == 1_060_000_000
    # Ethereum's free-form extraData is never mistaken for parameters.
    assert holocene_eip1559_params(b"geth-go1.22-linux") is None
    assert holocene_eip1559_params(bytes(9)) is None  # zeros: use the chain's constants


def test_arbitrum_base_fee_does_not_follow_the_parent_fill() -> None:
    block = {"baseFeePerGas": 10**7, "gasUsed": 30_000_000, "gasLimit": 32_000_000}
    assert model_next_base_fee(chain_profile("arbitrum").gas, block) == 10**7


def test_l1_fee_models_per_chain() -> None:
    assert chain_profile("base").l1_fee.kind == "op_stack"
    assert chain_profile("base").l1_fee.oracle == OP_GAS_PRICE_ORACLE
    assert chain_profile("arbitrum").l1_fee.kind == "arbitrum"
    assert chain_profile("ethereum").l1_fee.kind == "none"
    assert chain_profile("arbitrum").block_time_s == 0.25
