// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ReplicaV2Pair} from "./ReplicaV2Pair.sol";

/// @title ReplicaV2Factory
/// @notice A Uniswap-V2-style factory (getPair, allPairs, createPair with CREATE2 salted by the
///         sorted token pair) creating ReplicaV2Pair, whose init-code hash differs from
///         Uniswap's. The replicas put it at SushiSwap's factory address.
contract ReplicaV2Factory {
    address public feeTo;
    address public feeToSetter;
    mapping(address => mapping(address => address)) public getPair;
    address[] public allPairs;

    event PairCreated(address indexed token0, address indexed token1, address pair, uint256);

    constructor(address feeToSetter_) {
        feeToSetter = feeToSetter_;
    }

    function allPairsLength() external view returns (uint256) {
        return allPairs.length;
    }

    function createPair(address tokenA, address tokenB) external returns (address pair) {
        require(tokenA != tokenB, "UniswapV2: IDENTICAL_ADDRESSES");
        (address token0, address token1) = tokenA < tokenB ? (tokenA, tokenB) : (tokenB, tokenA);
        require(token0 != address(0), "UniswapV2: ZERO_ADDRESS");
        require(getPair[token0][token1] == address(0), "UniswapV2: PAIR_EXISTS");
        pair = address(new ReplicaV2Pair{salt: keccak256(abi.encodePacked(token0, token1))}());
        ReplicaV2Pair(pair).initialize(token0, token1);
        getPair[token0][token1] = pair;
        getPair[token1][token0] = pair;
        allPairs.push(pair);
        emit PairCreated(token0, token1, pair, allPairs.length);
    }
}
