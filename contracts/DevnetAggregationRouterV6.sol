// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title DevnetAggregationRouterV6
/// @notice The devnet's stand-in for 1inch's AggregationRouterV6 (0x111111125421cA6dc452d289314280a0f8842A65
///         on mainnets), whose bytecode is not available offline. It has the router's `swap`
///         entry point with the same ABI and the same contract with the caller: pull
///         `desc.amount` of `desc.srcToken` from `msg.sender`, swap, revert unless at least
///         `desc.minReturnAmount` of `desc.dstToken` came out, pay it to `desc.dstReceiver` (or
///         `msg.sender` when zero). Where 1inch runs `data` on its executor, this one swaps
///         through the Uniswap V2 Router02 named as `executor` (`data` is ignored).
/// @dev No external imports so the devnet needs nothing beyond the pinned solc.
contract DevnetAggregationRouterV6 {
    struct SwapDescription {
        address srcToken;
        address dstToken;
        address payable srcReceiver;
        address payable dstReceiver;
        uint256 amount;
        uint256 minReturnAmount;
        uint256 flags;
    }

    error ReturnAmountIsNotEnough(uint256 result, uint256 minReturn);
    error TransferFailed(address token);

    function swap(address executor, SwapDescription calldata desc, bytes calldata data)
        external
        payable
        returns (uint256 returnAmount, uint256 spentAmount)
    {
        data; // 1inch's executor program; the stand-in's route is fixed
        _call(desc.srcToken, abi.encodeWithSelector(0x23b872dd, msg.sender, address(this), desc.amount));
        _call(desc.srcToken, abi.encodeWithSelector(0x095ea7b3, executor, desc.amount));
        address[] memory path = new address[](2);
        path[0] = desc.srcToken;
        path[1] = desc.dstToken;
        uint256[] memory amounts = IRouter02(executor).swapExactTokensForTokens(
            desc.amount, 0, path, address(this), block.timestamp
        );
        returnAmount = amounts[1];
        spentAmount = desc.amount;
        if (returnAmount < desc.minReturnAmount) {
            revert ReturnAmountIsNotEnough(returnAmount, desc.minReturnAmount);
        }
        address receiver = desc.dstReceiver == address(0) ? msg.sender : desc.dstReceiver;
        _call(desc.dstToken, abi.encodeWithSelector(0xa9059cbb, receiver, returnAmount));
    }

    function _call(address token, bytes memory payload) private {
        (bool ok, bytes memory returned) = token.call(payload);
        if (!ok || (returned.length != 0 && !abi.decode(returned, (bool)))) {
            revert TransferFailed(token);
        }
    }
}

interface IRouter02 {
    function swapExactTokensForTokens(
        uint256 amountIn,
        uint256 amountOutMin,
        address[] calldata path,
        address to,
        uint256 deadline
    ) external returns (uint256[] memory amounts);
}
