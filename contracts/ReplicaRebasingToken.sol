// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title ReplicaRebasingToken
/// @notice A rebasing token in the manner of stETH: holders own shares, and `balanceOf` is
///         their share of `totalPooled`, which the issuer changes with `rebase` (balances move
///         without any transfer). Transfers move the shares worth the amount, rounded down,
///         so a recipient may get 1 unit less than was sent.
/// @dev No constructor: installed with anvil_setCode and set up with `initialize`.
contract ReplicaRebasingToken {
    string public name;
    string public symbol;
    uint8 public decimals;
    address public issuer;
    uint256 public totalShares;
    uint256 public totalPooled;

    mapping(address account => uint256) public sharesOf;
    mapping(address owner => mapping(address spender => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);
    event Rebased(uint256 totalPooled);

    function initialize(string calldata name_, string calldata symbol_, address issuer_) external {
        require(issuer == address(0) && issuer_ != address(0), "already initialized");
        name = name_;
        symbol = symbol_;
        decimals = 18;
        issuer = issuer_;
    }

    function totalSupply() external view returns (uint256) {
        return totalPooled;
    }

    function balanceOf(address account) public view returns (uint256) {
        return totalShares == 0 ? 0 : (sharesOf[account] * totalPooled) / totalShares;
    }

    /// New tokens for `to` at the current share price (1:1 while nothing was minted).
    function mint(address to, uint256 amount) external {
        require(msg.sender == issuer, "caller is not the issuer");
        uint256 shares = totalShares == 0 ? amount : (amount * totalShares) / totalPooled;
        totalShares += shares;
        totalPooled += amount;
        sharesOf[to] += shares;
        emit Transfer(address(0), to, amount);
    }

    /// Sets the pooled amount behind all shares: every balance scales with it.
    function rebase(uint256 newTotalPooled) external {
        require(msg.sender == issuer, "caller is not the issuer");
        totalPooled = newTotalPooled;
        emit Rebased(newTotalPooled);
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        _transfer(msg.sender, to, amount);
        return true;
    }

    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            require(allowed >= amount, "ERC20: insufficient allowance");
            allowance[from][msg.sender] = allowed - amount;
        }
        _transfer(from, to, amount);
        return true;
    }

    function _transfer(address from, address to, uint256 amount) private {
        require(to != address(0), "ERC20: transfer to zero address");
        uint256 shares = (amount * totalShares) / totalPooled;
        require(sharesOf[from] >= shares, "ERC20: transfer amount exceeds balance");
        sharesOf[from] -= shares;
        sharesOf[to] += shares;
        emit Transfer(from, to, amount);
    }
}
