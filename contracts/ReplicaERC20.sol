// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title ReplicaERC20
/// @notice A token for the chain replicas (agent/devnet/replica.py), placed at a real token's
///         address with anvil_setCode and set up with `initialize`. Only the issuer mints, as on
///         the real chain. Optional behaviours real tokens have: a transfer fee (fee-on-transfer
///         tokens deliver less than was sent) and a blocklist (transfers from or to a blocked
///         account revert).
/// @dev No constructor and no immutables, so the runtime bytecode works at any address.
contract ReplicaERC20 {
    string public name;
    string public symbol;
    uint8 public decimals;
    uint256 public totalSupply;
    address public issuer;
    /// Basis points of every transfer that are burnt instead of delivered.
    uint16 public transferFeeBps;

    mapping(address account => uint256) public balanceOf;
    mapping(address owner => mapping(address spender => uint256)) public allowance;
    mapping(address account => bool) public isBlocked;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);
    event Blocked(address indexed account, bool blocked);

    function initialize(
        string calldata name_,
        string calldata symbol_,
        uint8 decimals_,
        address issuer_,
        uint16 transferFeeBps_
    ) external {
        require(issuer == address(0), "already initialized");
        require(issuer_ != address(0) && transferFeeBps_ < 10_000, "bad settings");
        name = name_;
        symbol = symbol_;
        decimals = decimals_;
        issuer = issuer_;
        transferFeeBps = transferFeeBps_;
    }

    modifier onlyIssuer() {
        require(msg.sender == issuer, "caller is not the issuer");
        _;
    }

    function mint(address to, uint256 amount) external onlyIssuer {
        totalSupply += amount;
        balanceOf[to] += amount;
        emit Transfer(address(0), to, amount);
    }

    function setBlocked(address account, bool blocked) external onlyIssuer {
        isBlocked[account] = blocked;
        emit Blocked(account, blocked);
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
        require(!isBlocked[from] && !isBlocked[to], "account is blocked");
        require(to != address(0), "ERC20: transfer to zero address");
        uint256 fromBalance = balanceOf[from];
        require(fromBalance >= amount, "ERC20: transfer amount exceeds balance");
        uint256 fee = (amount * transferFeeBps) / 10_000;
        balanceOf[from] = fromBalance - amount;
        balanceOf[to] += amount - fee;
        totalSupply -= fee;
        emit Transfer(from, to, amount - fee);
        if (fee != 0) {
            emit Transfer(from, address(0), fee);
        }
    }
}
