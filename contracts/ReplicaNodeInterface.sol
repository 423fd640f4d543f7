// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {FastLzLength} from "./FastLzLength.sol";

/// @notice Arbitrum's NodeInterface (0x00000000000000000000000000000000000000C8) as far as gas
/// estimation goes, for the Arbitrum replica. On a real chain the NodeInterface is a virtual
/// contract that only a Nitro node answers (there is no code at 0xC8), so Anvil cannot serve
/// it; this contract mirrors its ABI and Nitro's formula (nodeinterface/NodeInterface.go,
/// arbos/l1pricing/l1pricing.go, arbos/tx_processor.go):
///   units      = (16 * l1Bytes + 256) * 10100 / 10000     estimation padding: +16 bytes, +1%
///   posterCost = l1BaseFeeEstimate * units                  wei (l1BaseFeeEstimate: ArbOS's
///                                                           L1 price per calldata unit)
///   gasEstimateL1Component: gasForL1 = posterCost * 11000 / 10000 / baseFee
///   gasEstimateComponents:  gasForL1 = posterCost * 11000 / 10000 / max(baseFee * 7/8, minBaseFee)
/// Nitro compresses the whole transaction with Brotli; Solidity has no Brotli, so l1Bytes is
/// FastLZ's compressed length of the calldata (same LZ77 family) plus 140 bytes for the
/// transaction's fixed fields (the fixed-size estimate Arbitrum integrators use for a
/// transaction without its calldata). baseFee is the L2 base fee: block.basefee, never below
/// minBaseFee (ArbOS's floor). Storage, set with anvil_setStorageAt:
///   slot 0: l1BaseFeeEstimate (wei per unit)    slot 1: minBaseFee (wei)
/// gasEstimateComponents cannot run the caller's gas estimate from inside the EVM: its
/// gasEstimate is gasEstimateForL1 plus the intrinsic gas of the calldata.
contract ReplicaNodeInterface is FastLzLength {
    uint256 internal constant TX_FIXED_BYTES = 140;
    uint256 internal constant UNITS_PER_BYTE = 16;
    uint256 internal constant PADDING_UNITS = 256;
    uint256 internal constant ONE_IN_BIPS = 10_000;
    uint256 internal constant UNITS_PADDING_BIPS = 10_100;
    uint256 internal constant PRICE_PADDING_BIPS = 11_000;

    uint256 public l1BaseFeeEstimate;
    uint256 public minBaseFee;

    function gasEstimateL1Component(address, bool, bytes calldata data)
        external
        view
        returns (uint64 gasEstimateForL1, uint256 baseFee, uint256 l1BaseFeeEstimate_)
    {
        baseFee = _baseFee();
        gasEstimateForL1 = uint64(_paddedPosterCost(data) / baseFee);
        l1BaseFeeEstimate_ = l1BaseFeeEstimate;
    }

    function gasEstimateComponents(address, bool, bytes calldata data)
        external
        view
        returns (uint64 gasEstimate, uint64 gasEstimateForL1, uint256 baseFee, uint256 l1BaseFeeEstimate_)
    {
        baseFee = _baseFee();
        uint256 congested = (baseFee * 7) / 8;
        if (congested < minBaseFee) congested = minBaseFee;
        gasEstimateForL1 = uint64(_paddedPosterCost(data) / congested);
        gasEstimate = gasEstimateForL1 + uint64(_intrinsicGas(data));
        l1BaseFeeEstimate_ = l1BaseFeeEstimate;
    }

    function _baseFee() internal view returns (uint256 fee) {
        fee = block.basefee;
        if (fee < minBaseFee) fee = minBaseFee;
        if (fee == 0) fee = 1;
    }

    function _paddedPosterCost(bytes calldata data) internal view returns (uint256) {
        uint256 l1Bytes = flzCompressLength(data) + TX_FIXED_BYTES;
        uint256 units = ((UNITS_PER_BYTE * l1Bytes + PADDING_UNITS) * UNITS_PADDING_BIPS) / ONE_IN_BIPS;
        return (l1BaseFeeEstimate * units * PRICE_PADDING_BIPS) / ONE_IN_BIPS;
    }

    function _intrinsicGas(bytes calldata data) internal pure returns (uint256 gas) {
        gas = 21_000;
        for (uint256 i = 0; i < data.length; i++) {
            gas += data[i] == 0 ? 4 : 16;
        }
    }
}
