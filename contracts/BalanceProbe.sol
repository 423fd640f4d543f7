// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title BalanceProbe
/// @notice Simulation only, never deployed: the signing policy runs an `eth_call` with this
///         runtime code placed at the wallet's own address (a state override), so the call
///         below is made by the wallet itself (`msg.sender` and `tx.origin` are the wallet, as
///         in the real transaction) and the balances read around it are those the real
///         transaction would change. One round trip, no trace API, any node with state overrides.
/// @dev No external imports so it compiles with the pinned solc alone.
contract BalanceProbe {
    /// @notice Reads every (token, holder) balance, calls `target` with `data`, reads them again.
    ///         `address(0)` as a token means the native balance. A revert of the call is bubbled
    ///         unchanged, so the caller decodes it as it decodes any simulation revert.
    /// @return before Balances before the call, `tokens` major (token i, holder j at i*holders+j).
    /// @return afterwards Balances after the call, same order.
    function probe(
        address target,
        bytes calldata data,
        address[] calldata tokens,
        address[] calldata holders
    ) external returns (uint256[] memory before, uint256[] memory afterwards) {
        before = _balances(tokens, holders);
        (bool ok, bytes memory returned) = target.call(data);
        if (!ok) {
            assembly {
                revert(add(returned, 32), mload(returned))
            }
        }
        afterwards = _balances(tokens, holders);
    }

    receive() external payable {}

    function _balances(address[] calldata tokens, address[] calldata holders)
        private
        view
        returns (uint256[] memory balances)
    {
        balances = new uint256[](tokens.length * holders.length);
        for (uint256 i; i < tokens.length; ++i) {
            for (uint256 j; j < holders.length; ++j) {
                balances[i * holders.length + j] = _balanceOf(tokens[i], holders[j]);
            }
        }
    }

    function _balanceOf(address token, address holder) private view returns (uint256) {
        if (token == address(0)) return holder.balance;
        (bool ok, bytes memory returned) =
            token.staticcall(abi.encodeWithSelector(0x70a08231, holder));
        // A token that cannot say (no code, odd return) reads as 0 on both sides: no change.
        if (!ok || returned.length < 32) return 0;
        return abi.decode(returned, (uint256));
    }
}
