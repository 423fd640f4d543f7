// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @notice The OP-stack GasPriceOracle predeploy (0x420000000000000000000000000000000000000F)
/// as the Fjord upgrade prices a transaction's L1 data, for the Base/Optimism replica.
/// The real oracle reads the L1 fee inputs from the L1Block predeploy; this one keeps them in
/// its own storage so the replica sets them with anvil_setStorageAt:
///   slot 0: isEcotone (byte 0) and isFjord (byte 1), as in the real contract
///   slot 1: l1BaseFee (wei)      slot 2: blobBaseFee (wei)
///   slot 3: baseFeeScalar        slot 4: blobBaseFeeScalar
/// The size estimate is FastLZ's compressed length (as Solady's LibZip.flzCompress produces)
/// fed to Fjord's linear regression; the length is computed without building the output.
contract ReplicaGasPriceOracle {
    uint256 public constant DECIMALS = 6;
    int256 internal constant COST_INTERCEPT = -42_585_600;
    uint256 internal constant COST_FASTLZ_COEF = 836_500;
    uint256 internal constant MIN_TRANSACTION_SIZE = 100;

    bool public isEcotone;
    bool public isFjord;
    uint256 public l1BaseFee;
    uint256 public blobBaseFee;
    uint256 internal _baseFeeScalar;
    uint256 internal _blobBaseFeeScalar;

    function version() external pure returns (string memory) {
        return "1.3.0-replica";
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

    /// @notice Length of FastLZ (level 1) compression of `ib`: literal runs of up to 32 bytes
    /// cost 1 + n bytes, matches of up to 262 bytes cost 2 (short) or 3 (long) bytes, within
    /// an 8 KiB window found through a 8192-entry hash of 3-byte sequences.
    function flzCompressLength(bytes memory ib) public pure returns (uint256 n) {
        uint256[] memory ht = new uint256[](8192);
        uint256 len = ib.length;
        uint256 ipLimit = len < 13 ? 0 : len - 13;
        uint256 anchor = 0;
        uint256 ip = 2;
        while (ip < ipLimit) {
            uint256 ref;
            uint256 distance;
            uint256 seq;
            while (true) {
                seq = _u24(ib, ip);
                uint256 h = _hash(seq);
                ref = ht[h];
                ht[h] = ip;
                distance = ip - ref;
                if (ip >= ipLimit) break;
                ip++;
                if (distance <= 0x1fff && seq == _u24(ib, ref)) break;
            }
            if (ip >= ipLimit) break;
            ip--;
            if (ip > anchor) n += _literalsLength(ip - anchor);
            uint256 l = _matchLength(ib, ref + 3, ip + 3, ipLimit + 9);
            n += _matchCost(l);
            ip += l;
            ht[_hash(_u24(ib, ip))] = ip;
            ip++;
            ht[_hash(_u24(ib, ip))] = ip;
            ip++;
            anchor = ip;
        }
        n += _literalsLength(len - anchor);
    }

    function _u24(bytes memory b, uint256 i) internal pure returns (uint256) {
        return uint256(uint8(b[i])) | (uint256(uint8(b[i + 1])) << 8) | (uint256(uint8(b[i + 2])) << 16);
    }

    function _hash(uint256 v) internal pure returns (uint256) {
        return (((2654435769 * v) & 0xffffffff) >> 19) & 0x1fff;
    }

    function _literalsLength(uint256 r) internal pure returns (uint256 n) {
        n = 0x21 * (r / 0x20);
        r %= 0x20;
        if (r != 0) n += r + 1;
    }

    function _matchCost(uint256 l) internal pure returns (uint256) {
        l--;
        return 3 * (l / 262) + (l % 262 >= 6 ? 3 : 2);
    }

    /// @dev As FastLZ counts it: the first differing byte is included (it ends the match).
    function _matchLength(bytes memory b, uint256 p, uint256 q, uint256 e) internal pure returns (uint256 l) {
        e -= q;
        while (l < e) {
            bool differs = b[p + l] != b[q + l];
            l++;
            if (differs) break;
        }
    }
}
