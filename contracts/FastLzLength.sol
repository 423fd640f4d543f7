// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @notice FastLZ (level 1) compressed length, computed without building the output: what
/// Solady's LibZip.flzCompress produces and op-geth's FlzCompressLen counts. Shared by the
/// replicas' fee contracts (the OP-stack GasPriceOracle, Arbitrum's NodeInterface).
contract FastLzLength {
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
