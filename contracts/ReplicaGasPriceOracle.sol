// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {FastLzLength} from "./FastLzLength.sol";

/// @notice The OP-stack GasPriceOracle predeploy (0x420000000000000000000000000000000000000F)
/// as the Fjord upgrade prices a transaction's L1 data, for the Base/Optimism replica.
/// The real oracle reads the L1 fee inputs from the L1Block predeploy; this one keeps them in
/// its own storage so the replica sets them with anvil_setStorageAt:
///   slot 0: isEcotone (byte 0), isFjord (byte 1), isIsthmus (byte 2), isJovian (byte 3)
///   slot 1: l1BaseFee (wei)      slot 2: blobBaseFee (wei)
///   slot 3: baseFeeScalar        slot 4: blobBaseFeeScalar
///   slot 5: operatorFeeScalar    slot 6: operatorFeeConstant (wei)   (Isthmus; 0 on Base)
/// The size estimate is FastLZ's compressed length (as Solady's LibZip.flzCompress produces)
/// fed to Fjord's linear regression; the length is computed without building the output.
contract ReplicaGasPriceOracle is FastLzLength {
    uint256 public constant DECIMALS = 6;
    int256 internal constant COST_INTERCEPT = -42_585_600;
    uint256 internal constant COST_FASTLZ_COEF = 836_500;
    uint256 internal constant MIN_TRANSACTION_SIZE = 100;

    bool public isEcotone;
    bool public isFjord;
    bool public isIsthmus;
    bool public isJovian;
    uint256 public l1BaseFee;
    uint256 public blobBaseFee;
    uint256 internal _baseFeeScalar;
    uint256 internal _blobBaseFeeScalar;
    uint256 internal _operatorFeeScalar;
    uint256 internal _operatorFeeConstant;

    function version() external pure returns (string memory) {
        return "1.4.0-replica";
    }

    function decimals() external pure returns (uint256) {
        return DECIMALS;
    }

    function baseFeeScalar() external view returns (uint32) {
        return uint32(_baseFeeScalar);
    }

    function blobBaseFeeScalar() external view returns (uint32) {
        return uint32(_blobBaseFeeScalar);
    }

    /// @notice L1 fee (wei) of an unsigned RLP-encoded transaction; 68 bytes stand for the
    /// signature the unsigned form lacks.
    function getL1Fee(bytes memory _data) external view returns (uint256) {
        return _fjordL1Cost(flzCompressLength(_data) + 68);
    }

    /// @notice Fjord's conservative bound for a transaction of `_unsignedTxSize` bytes.
    function getL1FeeUpperBound(uint256 _unsignedTxSize) external view returns (uint256) {
        uint256 txSize = _unsignedTxSize + 68;
        uint256 flzUpperBound = txSize + txSize / 255 + 16;
        return _fjordL1Cost(flzUpperBound);
    }

    /// @notice Estimated L1 gas (16 per byte of the Brotli-size estimate).
    function getL1GasUsed(bytes memory _data) external pure returns (uint256) {
        return (_fjordLinearRegression(flzCompressLength(_data) + 68) * 16) / 1e6;
    }

    /// @notice The operator fee (wei) of a transaction that used `_gasUsed` L2 gas: 0 before
    /// Isthmus; Isthmus: gasUsed * scalar / 1e6 + constant; Jovian: gasUsed * scalar * 100 +
    /// constant.
    function getOperatorFee(uint256 _gasUsed) external view returns (uint256) {
        if (!isIsthmus) return 0;
        if (isJovian) return _gasUsed * _operatorFeeScalar * 100 + _operatorFeeConstant;
        return (_gasUsed * _operatorFeeScalar) / 1e6 + _operatorFeeConstant;
    }

    function _fjordL1Cost(uint256 _fastLzSize) internal view returns (uint256) {
        uint256 estimatedSize = _fjordLinearRegression(_fastLzSize);
        uint256 feeScaled = _baseFeeScalar * 16 * l1BaseFee + _blobBaseFeeScalar * blobBaseFee;
        return (estimatedSize * feeScaled) / (10 ** (DECIMALS * 2));
    }

    function _fjordLinearRegression(uint256 _fastLzSize) internal pure returns (uint256) {
        int256 estimatedSize = COST_INTERCEPT + int256(COST_FASTLZ_COEF * _fastLzSize);
        if (estimatedSize < int256(MIN_TRANSACTION_SIZE) * 1e6) {
            estimatedSize = int256(MIN_TRANSACTION_SIZE) * 1e6;
        }
        return uint256(estimatedSize);
    }
}
