// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title ReplicaFiatToken
/// @notice Behaves like Circle's USDC (FiatTokenV2_2) where it matters to a trader: 6 decimals,
///         `bool` returns, and the balance stored in one slot with the blacklist flag: bit 255
///         of `balanceAndBlacklistStates[account]` marks the account blacklisted, the low 255
///         bits are its balance. Funding a wallet by writing its storage slot must keep that bit.
/// @dev No constructor: the replica installs the runtime code at USDC's address and calls
///      `initialize`.
contract ReplicaFiatToken {
    uint256 private constant _BLACKLISTED = 1 << 255;

    // Storage in FiatTokenV2_2's order, so the balance mapping is slot 9 as on Ethereum.
    address public owner;
    address public pauser;
    address public blacklister;
    mapping(address => bool) internal _deprecatedBlacklisted;
    string public name;
    string public symbol;
    uint8 public decimals;
    string public currency;
    address public masterMinter;
    mapping(address => uint256) internal balanceAndBlacklistStates;
    mapping(address => mapping(address => uint256)) internal allowed;
    uint256 internal totalSupply_;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);
    event Mint(address indexed minter, address indexed to, uint256 amount);
    event Blacklisted(address indexed account);
    event UnBlacklisted(address indexed account);

    function initialize(
        string calldata name_,
        string calldata symbol_,
        uint8 decimals_,
        address owner_
    ) external {
        require(owner == address(0) && owner_ != address(0), "FiatToken: already initialized");
        name = name_;
        symbol = symbol_;
        decimals = decimals_;
        currency = "USD";
        owner = owner_;
        masterMinter = owner_;
        blacklister = owner_;
        pauser = owner_;
    }

    function totalSupply() external view returns (uint256) {
        return totalSupply_;
    }

    function balanceOf(address account) external view returns (uint256) {
        return balanceAndBlacklistStates[account] & ~_BLACKLISTED;
    }

    function isBlacklisted(address account) external view returns (bool) {
        return balanceAndBlacklistStates[account] & _BLACKLISTED != 0;
    }

    function allowance(address owner_, address spender) external view returns (uint256) {
        return allowed[owner_][spender];
    }

    function mint(address to, uint256 amount) external returns (bool) {
        require(msg.sender == masterMinter, "FiatToken: caller is not a minter");
        _notBlacklisted(to);
        totalSupply_ += amount;
        _setBalance(to, _balance(to) + amount);
        emit Mint(msg.sender, to, amount);
        emit Transfer(address(0), to, amount);
        return true;
    }

    function blacklist(address account) external {
        require(msg.sender == blacklister, "Blacklistable: caller is not the blacklister");
        balanceAndBlacklistStates[account] |= _BLACKLISTED;
        emit Blacklisted(account);
    }

    function unBlacklist(address account) external {
        require(msg.sender == blacklister, "Blacklistable: caller is not the blacklister");
        balanceAndBlacklistStates[account] &= ~_BLACKLISTED;
        emit UnBlacklisted(account);
    }

    function approve(address spender, uint256 value) external returns (bool) {
        _notBlacklisted(msg.sender);
        _notBlacklisted(spender);
        allowed[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
        return true;
    }

    function transfer(address to, uint256 value) external returns (bool) {
        _notBlacklisted(msg.sender);
        _transfer(msg.sender, to, value);
        return true;
    }

    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        _notBlacklisted(msg.sender);
        _notBlacklisted(from);
        require(value <= allowed[from][msg.sender], "ERC20: transfer amount exceeds allowance");
        allowed[from][msg.sender] -= value;
        _transfer(from, to, value);
        return true;
    }

    function _transfer(address from, address to, uint256 value) private {
        _notBlacklisted(to);
        require(to != address(0), "ERC20: transfer to the zero address");
        uint256 fromBalance = _balance(from);
        require(value <= fromBalance, "ERC20: transfer amount exceeds balance");
        _setBalance(from, fromBalance - value);
        _setBalance(to, _balance(to) + value);
        emit Transfer(from, to, value);
    }

    function _notBlacklisted(address account) private view {
        require(
            balanceAndBlacklistStates[account] & _BLACKLISTED == 0,
            "Blacklistable: account is blacklisted"
        );
    }

    function _balance(address account) private view returns (uint256) {
        return balanceAndBlacklistStates[account] & ~_BLACKLISTED;
    }

    function _setBalance(address account, uint256 balance) private {
        require(balance < _BLACKLISTED, "FiatToken: balance exceeds (2^255 - 1)");
        balanceAndBlacklistStates[account] =
            (balanceAndBlacklistStates[account] & _BLACKLISTED) | balance;
    }
}
