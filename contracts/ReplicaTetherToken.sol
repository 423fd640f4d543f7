// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title ReplicaTetherToken
/// @notice Behaves like Ethereum's USDT (TetherToken) where it matters to a trader:
///         `transfer`, `transferFrom` and `approve` return nothing (callers that expect a bool
///         fail to decode), `approve` from a non-zero allowance to another non-zero one reverts
///         (it must be reset to 0 first), 6 decimals, and a blacklist kept by the owner.
/// @dev No constructor: the replica installs the runtime code at USDT's address and calls
///      `initialize`.
contract ReplicaTetherToken {
    // Storage in TetherToken's order where it matters: balances is slot 2 as on Ethereum.
    address public owner;
    uint256 public _totalSupply;
    mapping(address => uint256) public balances;
    mapping(address => mapping(address => uint256)) public allowed;
    mapping(address => bool) public isBlackListed;
    string public name;
    string public symbol;
    uint256 public decimals;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);
    event Issue(uint256 amount);
    event AddedBlackList(address user);
    event RemovedBlackList(address user);

    function initialize(string calldata name_, string calldata symbol_, address owner_) external {
        require(owner == address(0) && owner_ != address(0));
        name = name_;
        symbol = symbol_;
        decimals = 6;
        owner = owner_;
    }

    modifier onlyOwner() {
        require(msg.sender == owner);
        _;
    }

    function totalSupply() external view returns (uint256) {
        return _totalSupply;
    }

    function balanceOf(address who) external view returns (uint256) {
        return balances[who];
    }

    function allowance(address owner_, address spender) external view returns (uint256) {
        return allowed[owner_][spender];
    }

    /// Tether's `issue`: new tokens go to the owner.
    function issue(uint256 amount) external onlyOwner {
        balances[owner] += amount;
        _totalSupply += amount;
        emit Issue(amount);
        emit Transfer(address(0), owner, amount);
    }

    function addBlackList(address user) external onlyOwner {
        isBlackListed[user] = true;
        emit AddedBlackList(user);
    }

    function removeBlackList(address user) external onlyOwner {
        isBlackListed[user] = false;
        emit RemovedBlackList(user);
    }

    function transfer(address to, uint256 value) external {
        require(!isBlackListed[msg.sender]);
        _move(msg.sender, to, value);
    }

    function transferFrom(address from, address to, uint256 value) external {
        require(!isBlackListed[from]);
        uint256 allowance_ = allowed[from][msg.sender];
        if (allowance_ < type(uint256).max) {
            require(allowance_ >= value);
            allowed[from][msg.sender] = allowance_ - value;
        }
        _move(from, to, value);
    }

    function approve(address spender, uint256 value) external {
        // The USDT rule: an allowance must be set to 0 before it is changed to another value.
        require(!((value != 0) && (allowed[msg.sender][spender] != 0)));
        allowed[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
    }

    function _move(address from, address to, uint256 value) private {
        require(balances[from] >= value);
        balances[from] -= value;
        balances[to] += value;
        emit Transfer(from, to, value);
    }
}
