// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

interface IReplicaV2FactoryMin {
    function getPair(address tokenA, address tokenB) external view returns (address);
    function createPair(address tokenA, address tokenB) external returns (address);
}

interface IReplicaV2PairMin {
    function getReserves() external view returns (uint112, uint112, uint32);
    function mint(address to) external returns (uint256);
    function swap(uint256 amount0Out, uint256 amount1Out, address to, bytes calldata data) external;
}

interface IReplicaERC20Balance {
    function balanceOf(address account) external view returns (uint256);
}

/// @title ReplicaV2Router
/// @notice The Router02 functions the agent and the replicas use, for a V2 fork whose pairs
///         are found through the factory's `getPair` (no hardcoded init-code hash): addLiquidity,
///         swapExactTokensForTokens, its fee-on-transfer variant, getAmountsOut, getAmountsIn.
///         Same signatures, revert strings and amounts as Uniswap's UniswapV2Router02.
contract ReplicaV2Router {
    address public immutable factory;
    address public immutable WETH;

    constructor(address factory_, address weth_) {
        factory = factory_;
        WETH = weth_;
    }

    modifier ensure(uint256 deadline) {
        require(deadline >= block.timestamp, "UniswapV2Router: EXPIRED");
        _;
    }

    function _pair(address a, address b) private view returns (address pair) {
        pair = IReplicaV2FactoryMin(factory).getPair(a, b);
        require(pair != address(0), "UniswapV2Library: PAIR_NOT_FOUND");
    }

    function _reserves(address a, address b) private view returns (uint256 ra, uint256 rb) {
        (uint112 r0, uint112 r1,) = IReplicaV2PairMin(_pair(a, b)).getReserves();
        (ra, rb) = a < b ? (uint256(r0), uint256(r1)) : (uint256(r1), uint256(r0));
    }

    function getAmountOut(uint256 amountIn, uint256 reserveIn, uint256 reserveOut) public pure returns (uint256) {
        require(amountIn > 0, "UniswapV2Library: INSUFFICIENT_INPUT_AMOUNT");
        require(reserveIn > 0 && reserveOut > 0, "UniswapV2Library: INSUFFICIENT_LIQUIDITY");
        uint256 withFee = amountIn * 997;
        return (withFee * reserveOut) / (reserveIn * 1000 + withFee);
    }

    function getAmountIn(uint256 amountOut, uint256 reserveIn, uint256 reserveOut) public pure returns (uint256) {
        require(amountOut > 0, "UniswapV2Library: INSUFFICIENT_OUTPUT_AMOUNT");
        require(reserveIn > 0 && reserveOut > 0, "UniswapV2Library: INSUFFICIENT_LIQUIDITY");
        return (reserveIn * amountOut * 1000) / ((reserveOut - amountOut) * 997) + 1;
    }

    function getAmountsOut(uint256 amountIn, address[] memory path) public view returns (uint256[] memory amounts) {
        require(path.length >= 2, "UniswapV2Library: INVALID_PATH");
        amounts = new uint256[](path.length);
        amounts[0] = amountIn;
        for (uint256 i; i < path.length - 1; i++) {
            (uint256 rIn, uint256 rOut) = _reserves(path[i], path[i + 1]);
            amounts[i + 1] = getAmountOut(amounts[i], rIn, rOut);
        }
    }

    function getAmountsIn(uint256 amountOut, address[] memory path) public view returns (uint256[] memory amounts) {
        require(path.length >= 2, "UniswapV2Library: INVALID_PATH");
        amounts = new uint256[](path.length);
        amounts[amounts.length - 1] = amountOut;
        for (uint256 i = path.length - 1; i > 0; i--) {
            (uint256 rIn, uint256 rOut) = _reserves(path[i - 1], path[i]);
            amounts[i - 1] = getAmountIn(amounts[i], rIn, rOut);
        }
    }

    function addLiquidity(
        address tokenA,
        address tokenB,
        uint256 amountADesired,
        uint256 amountBDesired,
        uint256 amountAMin,
        uint256 amountBMin,
        address to,
        uint256 deadline
    ) external ensure(deadline) returns (uint256 amountA, uint256 amountB, uint256 liquidity) {
        if (IReplicaV2FactoryMin(factory).getPair(tokenA, tokenB) == address(0)) {
            IReplicaV2FactoryMin(factory).createPair(tokenA, tokenB);
        }
        (uint256 rA, uint256 rB) = _reserves(tokenA, tokenB);
        if (rA == 0 && rB == 0) {
            (amountA, amountB) = (amountADesired, amountBDesired);
        } else {
            uint256 bOptimal = (amountADesired * rB) / rA;
            if (bOptimal <= amountBDesired) {
                require(bOptimal >= amountBMin, "UniswapV2Router: INSUFFICIENT_B_AMOUNT");
                (amountA, amountB) = (amountADesired, bOptimal);
            } else {
                uint256 aOptimal = (amountBDesired * rA) / rB;
                require(aOptimal >= amountAMin, "UniswapV2Router: INSUFFICIENT_A_AMOUNT");
                (amountA, amountB) = (aOptimal, amountBDesired);
            }
        }
        address pair = _pair(tokenA, tokenB);
        _transferFrom(tokenA, msg.sender, pair, amountA);
        _transferFrom(tokenB, msg.sender, pair, amountB);
        liquidity = IReplicaV2PairMin(pair).mint(to);
    }

    function swapExactTokensForTokens(
        uint256 amountIn,
        uint256 amountOutMin,
        address[] calldata path,
        address to,
        uint256 deadline
    ) external ensure(deadline) returns (uint256[] memory amounts) {
        amounts = getAmountsOut(amountIn, path);
        require(amounts[amounts.length - 1] >= amountOutMin, "UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT");
        _transferFrom(path[0], msg.sender, _pair(path[0], path[1]), amounts[0]);
        for (uint256 i; i < path.length - 1; i++) {
            (address input, address output) = (path[i], path[i + 1]);
            uint256 amountOut = amounts[i + 1];
            (uint256 out0, uint256 out1) = input < output ? (uint256(0), amountOut) : (amountOut, uint256(0));
            address recipient = i < path.length - 2 ? _pair(output, path[i + 2]) : to;
            IReplicaV2PairMin(_pair(input, output)).swap(out0, out1, recipient, new bytes(0));
        }
    }

    /// For fee-on-transfer tokens: each hop's input is what actually arrived at the pair.
    function swapExactTokensForTokensSupportingFeeOnTransferTokens(
        uint256 amountIn,
        uint256 amountOutMin,
        address[] calldata path,
        address to,
        uint256 deadline
    ) external ensure(deadline) {
        _transferFrom(path[0], msg.sender, _pair(path[0], path[1]), amountIn);
        address last = path[path.length - 1];
        uint256 before = IReplicaERC20Balance(last).balanceOf(to);
        for (uint256 i; i < path.length - 1; i++) {
            address recipient = i < path.length - 2 ? _pair(path[i + 1], path[i + 2]) : to;
            _swapArrived(path[i], path[i + 1], recipient);
        }
        require(
            IReplicaERC20Balance(last).balanceOf(to) - before >= amountOutMin,
            "UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT"
        );
    }

    function _swapArrived(address input, address output, address recipient) private {
        address pair = _pair(input, output);
        (uint256 rIn, uint256 rOut) = _reserves(input, output);
        uint256 amountOut = getAmountOut(IReplicaERC20Balance(input).balanceOf(pair) - rIn, rIn, rOut);
        (uint256 out0, uint256 out1) = input < output ? (uint256(0), amountOut) : (amountOut, uint256(0));
        IReplicaV2PairMin(pair).swap(out0, out1, recipient, new bytes(0));
    }

    function _transferFrom(address token, address from, address to, uint256 value) private {
        (bool success, bytes memory data) =
            token.call(abi.encodeWithSelector(0x23b872dd, from, to, value));
        require(success && (data.length == 0 || abi.decode(data, (bool))), "TransferHelper: TRANSFER_FROM_FAILED");
    }
}
