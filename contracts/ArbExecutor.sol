// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title ArbExecutor
/// @notice Executor-only, atomic multi-hop arbitrage across Uniswap V2 pairs and V3 pools.
/// @dev A route is a cycle of hops that starts and ends in `startToken`. It is funded either from
///      this contract's own balance (`execute`) or by a V2 flash swap on the first hop
///      (`executeWithFlashLoan`). Either way the call reverts with `InsufficientProfit` unless this
///      contract's balance of `startToken` grew by at least `minProfit`, so a failed or stale
///      opportunity costs only gas.
///
///      V2 hops use "transfer, then swap": the input is sent to the pair (previous hops send their
///      output straight to the next V2 pair) and the output is computed here from the pair's
///      current reserves and its actual token balance with the hop's fee. Computing on-chain means a
///      stale off-chain prediction can never over-ask (which would revert with "UniswapV2: K") and
///      never under-asks either; the profit check is what enforces the prediction.
///
///      V3 hops call `pool.swap` exact-input with no price limit; the pool pulls the input in
///      `uniswapV3SwapCallback`. Callbacks are accepted only (a) while this contract is waiting for
///      that exact pool (transient storage), and (b) from the address the V3 factory's CREATE2
///      derivation gives for (token0, token1, fee); V2 flash callbacks likewise check the pair
///      CREATE2 address from a registered V2 factory and its init-code hash. Every hop's pool must
///      equal its derived address, so calldata cannot route funds to an arbitrary contract.
///
///      No approvals are ever granted and there is no delegatecall. Two roles: the executor (the
///      hot trading key, the deployer at first) runs routes and may sweep funds, but only ever to
///      the owner; the owner (set at deployment, immutable, may be a cold address) is where
///      withdrawals go, and alone registers V2 factories and replaces the executor. A stolen
///      trading key can therefore trade (never at a loss: the profit check) but never withdraw
///      anywhere else. Hop.kind: 0 = Uniswap V2 pair, 1 = Uniswap V3 pool. Hop.feePips is
///      in hundredths of a basis point (3000 = 0.3 %), also for V2 pairs.
contract ArbExecutor {
    struct Hop {
        uint8 kind;
        address pool;
        address tokenIn;
        address tokenOut;
        uint24 feePips;
        address factory;
    }

    uint8 public constant KIND_V2 = 0;
    uint8 public constant KIND_V3 = 1;

    bytes32 public constant V3_POOL_INIT_CODE_HASH =
        0xe34f199b19b2b4f47f68442619d555527d244f78a3297ea89325f843f87b8b54;

    uint24 private constant FEE_DENOMINATOR = 1_000_000;
    // TickMath.MIN_SQRT_RATIO + 1 and MAX_SQRT_RATIO - 1: "no price limit" for exact-input swaps.
    uint160 private constant MIN_SQRT_PRICE_LIMIT = 4295128740;
    uint160 private constant MAX_SQRT_PRICE_LIMIT =
        1461446703485210103287273052203988822378723970341;

    address public immutable owner;
    address public immutable v3Factory;
    /// @notice The key that runs routes (the agent's hot wallet); the owner may replace it.
    address public executor;

    /// @notice Init-code hash of the pair contract per accepted V2 factory; zero = not accepted.
    mapping(address factory => bytes32 initCodeHash) public v2InitCodeHash;

    // The one pool allowed to call back right now, and the most it may take (V3 input, wei).
    address private transient expectedCallbackPool;
    uint256 private transient maxCallbackPayment;

    event ArbitrageExecuted(address indexed startToken, uint256 amountIn, uint256 profit);
    event V2FactorySet(address indexed factory, bytes32 initCodeHash);
    event ExecutorSet(address indexed executor);

    error NotOwner();
    error NotExecutor();
    error DeadlineExpired(uint256 deadline, uint256 timestamp);
    error InvalidHop(uint256 index);
    error BrokenRoute(uint256 index);
    error UnknownV2Factory(address factory);
    error UnauthorizedCallback(address caller);
    error CallbackOverpayment(uint256 owed, uint256 maxPayment);
    error InsufficientProfit(uint256 balanceBefore, uint256 balanceAfter, uint256 minProfit);
    error TransferFailed(address token, address to, uint256 amount);
    error EthTransferFailed(address to, uint256 amount);
    error LengthMismatch();
    error AmountTooLarge(uint256 amount);

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

    modifier onlyExecutor() {
        if (msg.sender != executor) revert NotExecutor();
        _;
    }

    modifier onlyOwnerOrExecutor() {
        if (msg.sender != owner && msg.sender != executor) revert NotExecutor();
        _;
    }

    /// @param owner_ Where withdrawals go (may be a cold address); zero = the deployer.
    /// @param v3Factory_ Uniswap V3 factory whose pools V3 hops may use.
    /// @param v2Factories V2 factories whose pairs V2 hops may use.
    /// @param v2InitCodeHashes Pair init-code hash of each factory, same order.
    constructor(
        address owner_,
        address v3Factory_,
        address[] memory v2Factories,
        bytes32[] memory v2InitCodeHashes
    ) {
        if (v2Factories.length != v2InitCodeHashes.length) revert LengthMismatch();
        owner = owner_ == address(0) ? msg.sender : owner_;
        executor = msg.sender;
        emit ExecutorSet(msg.sender);
        v3Factory = v3Factory_;
        for (uint256 i; i < v2Factories.length; ++i) {
            _setV2Factory(v2Factories[i], v2InitCodeHashes[i]);
        }
    }

    receive() external payable {}

    // ------------------------------------------------------------------ entry points (executor)

    /// @notice Runs `hops` with `amountIn` (smallest units of `startToken`) from this contract's
    ///         own balance. Reverts unless the balance of `startToken` ends >= start + minProfit.
    /// @return profit Balance increase of `startToken`, smallest units.
    function execute(
        Hop[] calldata hops,
        address startToken,
        uint256 amountIn,
        uint256 minProfit,
        uint256 deadline
    ) external onlyExecutor returns (uint256 profit) {
        _checkDeadline(deadline);
        Hop[] memory route = hops;
        _validateRoute(route, startToken);
        uint256 balanceBefore = _balanceOf(startToken, address(this));
        // V2 pairs are paid up front; V3 pools pull the input in their callback.
        if (route[0].kind == KIND_V2) _safeTransfer(startToken, route[0].pool, amountIn);
        _runHops(route, 0, amountIn);
        profit = _settle(startToken, balanceBefore, minProfit, amountIn);
    }

    /// @notice Flash-swaps the first hop (must be V2): receives its output first, runs the other
    ///         hops inside `uniswapV2Call`, then pays the pair `amountIn` of `startToken`. Needs no
    ///         capital; reverts unless the balance of `startToken` ends >= start + minProfit.
    /// @return profit Balance increase of `startToken`, smallest units.
    function executeWithFlashLoan(
        Hop[] calldata hops,
        address startToken,
        uint256 amountIn,
        uint256 minProfit,
        uint256 deadline
    ) external onlyExecutor returns (uint256 profit) {
        _checkDeadline(deadline);
        Hop[] memory route = hops;
        _validateRoute(route, startToken);
        if (route[0].kind != KIND_V2) revert InvalidHop(0);
        uint256 balanceBefore = _balanceOf(startToken, address(this));
        _flashSwapFirstHop(route, amountIn);
        profit = _settle(startToken, balanceBefore, minProfit, amountIn);
    }

    // ------------------------------------------------------------------ callbacks

    /// @notice V2 flash-swap callback: runs hops[1:] with the borrowed tokens, repays the pair.
    function uniswapV2Call(address sender, uint256, uint256, bytes calldata data) external {
        // `sender` is whoever called pair.swap: anyone can name us as `to`, only we may start it.
        if (msg.sender != expectedCallbackPool || sender != address(this)) {
            revert UnauthorizedCallback(msg.sender);
        }
        (Hop[] memory route, uint256 repayAmount, uint256 borrowed) =
            abi.decode(data, (Hop[], uint256, uint256));
        Hop memory first = route[0];
        if (msg.sender != _v2PairFor(first.factory, first.tokenIn, first.tokenOut)) {
            revert UnauthorizedCallback(msg.sender);
        }
        expectedCallbackPool = address(0);

        if (route[1].kind == KIND_V2) _safeTransfer(first.tokenOut, route[1].pool, borrowed);
        _runHops(route, 1, borrowed);
        _safeTransfer(first.tokenIn, msg.sender, repayAmount);
    }

    /// @notice V3 swap callback: pays the pool exactly what it is owed of the hop's input token.
    function uniswapV3SwapCallback(int256 amount0Delta, int256 amount1Delta, bytes calldata data)
        external
    {
        if (msg.sender != expectedCallbackPool) revert UnauthorizedCallback(msg.sender);
        (address tokenIn, address tokenOut, uint24 feePips) =
            abi.decode(data, (address, address, uint24));
        if (msg.sender != _v3PoolFor(tokenIn, tokenOut, feePips)) {
            revert UnauthorizedCallback(msg.sender);
        }
        expectedCallbackPool = address(0);

        // Exact input: the positive delta is the input token; the other delta is our output.
        int256 owedDelta = tokenIn < tokenOut ? amount0Delta : amount1Delta;
        uint256 maxPayment = maxCallbackPayment;
        if (owedDelta <= 0 || uint256(owedDelta) > maxPayment) {
            revert CallbackOverpayment(owedDelta <= 0 ? 0 : uint256(owedDelta), maxPayment);
        }
        _safeTransfer(tokenIn, msg.sender, uint256(owedDelta));
    }

    // ------------------------------------------------------------------ owner administration

    /// @notice Accepts pairs of `factory` (CREATE2 with `initCodeHash`); a zero hash removes it.
    function setV2Factory(address factory, bytes32 initCodeHash) external onlyOwner {
        _setV2Factory(factory, initCodeHash);
    }

    /// @notice Replaces the trading key (a lost or rotated hot wallet).
    function setExecutor(address executor_) external onlyOwner {
        executor = executor_;
        emit ExecutorSet(executor_);
    }

    /// @notice Sends `amount` (smallest units) of `token` to the owner, never anywhere else.
    function withdrawToken(address token, uint256 amount) external onlyOwnerOrExecutor {
        _safeTransfer(token, owner, amount);
    }

    /// @notice Sends `amount` wei of ETH to the owner, never anywhere else.
    function withdrawEth(uint256 amount) external onlyOwnerOrExecutor {
        (bool success,) = payable(owner).call{value: amount}("");
        if (!success) revert EthTransferFailed(owner, amount);
    }

    // ------------------------------------------------------------------ route execution

    /// @dev Borrows the first (V2) hop's output for `repayAmount` of its input; the rest of the
    ///      route runs in `uniswapV2Call`.
    function _flashSwapFirstHop(Hop[] memory route, uint256 repayAmount) private {
        Hop memory first = route[0];
        (uint256 reserveIn, uint256 reserveOut) = _v2Reserves(first);
        uint256 borrowed = _v2AmountOut(repayAmount, reserveIn, reserveOut, first.feePips);
        bool zeroForOne = first.tokenIn < first.tokenOut;
        expectedCallbackPool = first.pool;
        IUniswapV2Pair(first.pool).swap(
            zeroForOne ? 0 : borrowed,
            zeroForOne ? borrowed : 0,
            address(this),
            abi.encode(route, repayAmount, borrowed)
        );
    }

    /// @dev Runs route[start:], `amountIn` being what hop `start` spends; returns the last output.
    ///      A V2 hop's input is already at its pair when it runs (sent by the previous hop or
    ///      by the caller), so a hop whose successor is V2 sends its output straight there.
    function _runHops(Hop[] memory route, uint256 start, uint256 amountIn)
        private
        returns (uint256 amount)
    {
        amount = amountIn;
        uint256 count = route.length;
        for (uint256 i = start; i < count; ++i) {
            Hop memory hop = route[i];
            address recipient = (i + 1 < count && route[i + 1].kind == KIND_V2)
                ? route[i + 1].pool
                : address(this);
            amount = hop.kind == KIND_V2 ? _swapV2(hop, recipient) : _swapV3(hop, amount, recipient);
        }
    }

    function _swapV2(Hop memory hop, address recipient) private returns (uint256 amountOut) {
        (uint256 reserveIn, uint256 reserveOut) = _v2Reserves(hop);
        // What the pair actually holds above its reserve is the input it will credit us with.
        uint256 amountIn = _balanceOf(hop.tokenIn, hop.pool) - reserveIn;
        amountOut = _v2AmountOut(amountIn, reserveIn, reserveOut, hop.feePips);
        bool zeroForOne = hop.tokenIn < hop.tokenOut;
        IUniswapV2Pair(hop.pool).swap(
            zeroForOne ? 0 : amountOut, zeroForOne ? amountOut : 0, recipient, ""
        );
    }

    function _swapV3(Hop memory hop, uint256 amountIn, address recipient)
        private
        returns (uint256 amountOut)
    {
        if (amountIn > uint256(type(int256).max)) revert AmountTooLarge(amountIn);
        bool zeroForOne = hop.tokenIn < hop.tokenOut;
        expectedCallbackPool = hop.pool;
        maxCallbackPayment = amountIn;
        (int256 amount0, int256 amount1) = IUniswapV3Pool(hop.pool).swap(
            recipient,
            zeroForOne,
            int256(amountIn),
            zeroForOne ? MIN_SQRT_PRICE_LIMIT : MAX_SQRT_PRICE_LIMIT,
            abi.encode(hop.tokenIn, hop.tokenOut, hop.feePips)
        );
        // The pool reports what it sent as a negative delta.
        amountOut = uint256(-(zeroForOne ? amount1 : amount0));
    }

    function _settle(address startToken, uint256 balanceBefore, uint256 minProfit, uint256 amountIn)
        private
        returns (uint256 profit)
    {
        uint256 balanceAfter = _balanceOf(startToken, address(this));
        // Written without `balanceBefore + minProfit` so a huge minProfit cannot overflow.
        if (balanceAfter < balanceBefore || balanceAfter - balanceBefore < minProfit) {
            revert InsufficientProfit(balanceBefore, balanceAfter, minProfit);
        }
        profit = balanceAfter - balanceBefore;
        emit ArbitrageExecuted(startToken, amountIn, profit);
    }

    // ------------------------------------------------------------------ validation

    function _checkDeadline(uint256 deadline) private view {
        if (block.timestamp > deadline) revert DeadlineExpired(deadline, block.timestamp);
    }

    /// @dev The route must be a cycle from `startToken` back to it, and every pool must be the
    ///      one its factory derives for the hop's tokens and fee.
    function _validateRoute(Hop[] memory route, address startToken) private view {
        uint256 count = route.length;
        if (count == 0) revert BrokenRoute(0);
        address expectedTokenIn = startToken;
        for (uint256 i; i < count; ++i) {
            Hop memory hop = route[i];
            if (hop.tokenIn != expectedTokenIn || hop.tokenIn == hop.tokenOut) revert BrokenRoute(i);
            if (hop.kind == KIND_V2) {
                if (hop.feePips == 0 || hop.feePips >= FEE_DENOMINATOR) revert InvalidHop(i);
                if (hop.pool != _v2PairFor(hop.factory, hop.tokenIn, hop.tokenOut)) {
                    revert InvalidHop(i);
                }
            } else if (hop.kind == KIND_V3) {
                if (hop.factory != v3Factory) revert InvalidHop(i);
                if (hop.pool != _v3PoolFor(hop.tokenIn, hop.tokenOut, hop.feePips)) {
                    revert InvalidHop(i);
                }
            } else {
                revert InvalidHop(i);
            }
            expectedTokenIn = hop.tokenOut;
        }
        if (expectedTokenIn != startToken) revert BrokenRoute(count);
    }

    // ------------------------------------------------------------------ pool math and addresses

    function _v2Reserves(Hop memory hop)
        private
        view
        returns (uint256 reserveIn, uint256 reserveOut)
    {
        (uint112 reserve0, uint112 reserve1,) = IUniswapV2Pair(hop.pool).getReserves();
        (reserveIn, reserveOut) =
            hop.tokenIn < hop.tokenOut ? (reserve0, reserve1) : (reserve1, reserve0);
    }

    /// @dev UniswapV2Library.getAmountOut with the fee in pips; for 3000 pips this is exactly
    ///      the library's 997/1000 result (numerator and denominator both scale by 1000).
    function _v2AmountOut(uint256 amountIn, uint256 reserveIn, uint256 reserveOut, uint24 feePips)
        private
        pure
        returns (uint256)
    {
        uint256 amountInWithFee = amountIn * (FEE_DENOMINATOR - feePips);
        return (amountInWithFee * reserveOut) / (reserveIn * FEE_DENOMINATOR + amountInWithFee);
    }

    function _v2PairFor(address factory, address tokenA, address tokenB)
        private
        view
        returns (address)
    {
        bytes32 initCodeHash = v2InitCodeHash[factory];
        if (initCodeHash == bytes32(0)) revert UnknownV2Factory(factory);
        (address token0, address token1) = tokenA < tokenB ? (tokenA, tokenB) : (tokenB, tokenA);
        bytes32 salt = keccak256(abi.encodePacked(token0, token1));
        return _create2Address(factory, salt, initCodeHash);
    }

    function _v3PoolFor(address tokenA, address tokenB, uint24 feePips)
        private
        view
        returns (address)
    {
        (address token0, address token1) = tokenA < tokenB ? (tokenA, tokenB) : (tokenB, tokenA);
        bytes32 salt = keccak256(abi.encode(token0, token1, feePips));
        return _create2Address(v3Factory, salt, V3_POOL_INIT_CODE_HASH);
    }

    function _create2Address(address deployer, bytes32 salt, bytes32 initCodeHash)
        private
        pure
        returns (address)
    {
        return address(
            uint160(uint256(keccak256(abi.encodePacked(bytes1(0xff), deployer, salt, initCodeHash))))
        );
    }

    function _setV2Factory(address factory, bytes32 initCodeHash) private {
        v2InitCodeHash[factory] = initCodeHash;
        emit V2FactorySet(factory, initCodeHash);
    }

    // ------------------------------------------------------------------ token helpers

    function _balanceOf(address token, address account) private view returns (uint256) {
        return IERC20Minimal(token).balanceOf(account);
    }

    /// @dev Accepts tokens that return nothing (USDT-style) as well as those returning true.
    function _safeTransfer(address token, address to, uint256 amount) private {
        (bool success, bytes memory returned) =
            token.call(abi.encodeCall(IERC20Minimal.transfer, (to, amount)));
        // An empty return from an address without code would otherwise pass as success.
        bool ok = success
            && (returned.length == 0 ? token.code.length != 0 : abi.decode(returned, (bool)));
        if (!ok) {
            revert TransferFailed(token, to, amount);
        }
    }
}

interface IERC20Minimal {
    function balanceOf(address account) external view returns (uint256);
    function transfer(address to, uint256 amount) external returns (bool);
}

interface IUniswapV2Pair {
    function getReserves()
        external
        view
        returns (uint112 reserve0, uint112 reserve1, uint32 blockTimestampLast);
    function swap(uint256 amount0Out, uint256 amount1Out, address to, bytes calldata data) external;
}

interface IUniswapV3Pool {
    function swap(
        address recipient,
        bool zeroForOne,
        int256 amountSpecified,
        uint160 sqrtPriceLimitX96,
        bytes calldata data
    ) external returns (int256 amount0, int256 amount1);
}
