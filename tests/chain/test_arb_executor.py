"""ArbExecutor on the devnet: an engineered price gap across uniswap_v2, a V3 pool and sushiswap
is captured atomically with the profit predicted to the wei; anything short of minProfit, any
stranger and any fake callback is refused with no token moving."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import encode
from web3 import AsyncWeb3
from web3.contract import AsyncContract
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

from agent.chain.abi import UNISWAP_V2_PAIR_INIT_CODE_HASH, v2_pair_address, v3_pool_address
from agent.chain.arb_executor import (
    Hop,
    HopKind,
    decode_arb_executor_error,
    encode_deployment,
    encode_execute,
    encode_execute_with_flash_loan,
    load_arb_executor_artifact,
)
from agent.devnet import Devnet
from tests.conftest import load_abi

pytestmark = pytest.mark.chain

FAR_DEADLINE = 2**40
GAS = 3_000_000


def get_amount_out(amount_in: int, reserve_in: int, reserve_out: int, fee_pips: int = 3000) -> int:
    """UniswapV2Library.getAmountOut with the fee in pips (3000 = the library's 997/1000)."""
    amount_in_with_fee = amount_in * (1_000_000 - fee_pips)
    return amount_in_with_fee * reserve_out // (reserve_in * 1_000_000 + amount_in_with_fee)


class Setup:
    """The deployed executor, its executor key (``owner``: the deployer, the hot key that trades),
    its cold owner (withdrawals), the route and the accounts a test plays with."""

    def __init__(self, w3: AsyncWeb3, devnet: Devnet, executor: str) -> None:
        a = devnet.addresses
        self.w3 = w3
        self.devnet = devnet
        self.owner = devnet.accounts[1][0]
        self.trader = devnet.accounts[2][0]
        self.stranger = devnet.accounts[3][0]
        self.cold_owner = devnet.accounts[7][0]
        self.executor = executor
        self.contract: AsyncContract = w3.eth.contract(
            address=executor, abi=load_arb_executor_artifact().abi
        )
        self.weth, self.usdc, self.dai = a["WETH"], a["USDC"], a["DAI"]
        # WETH -> USDC on uniswap_v2, USDC -> DAI on the 0.01 % V3 pool, DAI -> WETH on sushiswap.
        self.route = (
            Hop(
                HopKind.V2,
                v2_pair_address(a["uniswap_v2.factory"], self.weth, self.usdc),
                self.weth,
                self.usdc,
                3000,
                a["uniswap_v2.factory"],
            ),
            Hop(
                HopKind.V3,
                v3_pool_address(a["uniswap_v3.factory"], self.usdc, self.dai, 100),
                self.usdc,
                self.dai,
                100,
                a["uniswap_v3.factory"],
            ),
            Hop(
                HopKind.V2,
                v2_pair_address(a["sushiswap.factory"], self.dai, self.weth),
                self.dai,
                self.weth,
                3000,
                a["sushiswap.factory"],
            ),
        )

    @property
    def pools(self) -> list[str]:
        return [hop.pool for hop in self.route]


async def balance_of(w3: AsyncWeb3, token: str, account: str) -> int:
    erc20 = w3.eth.contract(address=w3.to_checksum_address(token), abi=load_abi("ERC20"))
    return int(await erc20.functions.balanceOf(account).call())


async def send(w3: AsyncWeb3, tx: dict[str, Any]) -> dict[str, Any]:
    """Mine ``tx`` (a fixed gas limit skips estimation, so reverting calls are mined too)."""
    tx_hash = await w3.eth.send_transaction({"gas": GAS, **tx})  # type: ignore[typeddict-item]
    return dict(await w3.eth.wait_for_transaction_receipt(tx_hash))


async def revert_reason(w3: AsyncWeb3, tx: dict[str, Any]) -> str | None:
    """The decoded ArbExecutor error ``tx`` reverts with when simulated."""
    with pytest.raises(ContractLogicError) as info:
        await w3.eth.call(tx)  # type: ignore[arg-type]
    data = info.value.data
    assert isinstance(data, str), data
    return decode_arb_executor_error(bytes.fromhex(data.removeprefix("0x")))


async def token_snapshot(setup: Setup) -> dict[tuple[str, str], int]:
    """Every route token's balance at the executor, the owner and every route pool."""
    holders = [setup.executor, setup.owner, *setup.pools]
    return {
        (token, holder): await balance_of(setup.w3, token, holder)
        for token in (setup.weth, setup.usdc, setup.dai)
        for holder in holders
    }


async def predict_final_amount(
    setup: Setup, amount_in: int, route: tuple[Hop, ...] | None = None
) -> int:
    """What the route returns for ``amount_in`` (smallest units): V2 by the library formula from
    current reserves, V3 from QuoterV2. Exact because every pool appears once in the route."""
    w3, a = setup.w3, setup.devnet.addresses
    quoter = w3.eth.contract(address=a["uniswap_v3.quoter_v2"], abi=load_abi("QuoterV2"))
    amount = amount_in
    for hop in route or setup.route:
        if hop.kind == HopKind.V2:
            pair = w3.eth.contract(address=hop.pool, abi=load_abi("UniswapV2Pair"))
            reserve0, reserve1, _ = await pair.functions.getReserves().call()
            zero_for_one = int(hop.token_in, 16) < int(hop.token_out, 16)
            reserve_in, reserve_out = (reserve0, reserve1) if zero_for_one else (reserve1, reserve0)
            amount = get_amount_out(amount, reserve_in, reserve_out, hop.fee_pips)
        else:
            params = (hop.token_in, hop.token_out, amount, hop.fee_pips, 0)
            amount = (await quoter.functions.quoteExactInputSingle(params).call())[0]
    return amount


async def open_price_gap(setup: Setup) -> None:
    """A whale buys WETH with 400k USDC on uniswap_v2 (transfer, then pair.swap), lifting WETH
    there well above sushiswap and the V3 USDC/DAI rate."""
    w3, pair_address = setup.w3, setup.route[0].pool
    usdc_in = 400_000 * 10**6
    pair = w3.eth.contract(address=pair_address, abi=load_abi("UniswapV2Pair"))
    reserve0, reserve1, _ = await pair.functions.getReserves().call()
    usdc_is_token0 = int(setup.usdc, 16) < int(setup.weth, 16)
    reserve_usdc, reserve_weth = (reserve0, reserve1) if usdc_is_token0 else (reserve1, reserve0)
    weth_out = get_amount_out(usdc_in, reserve_usdc, reserve_weth)
    usdc = w3.eth.contract(address=setup.usdc, abi=load_abi("ERC20"))
    await usdc.functions.transfer(pair_address, usdc_in).transact({"from": setup.trader})
    amounts = (0, weth_out) if usdc_is_token0 else (weth_out, 0)
    receipt = await send(
        w3,
        {
            "from": setup.trader,
            "to": pair_address,
            "data": pair.encode_abi("swap", [*amounts, setup.trader, b""]),
        },
    )
    assert receipt["status"] == 1


@pytest.fixture
async def setup(w3: AsyncWeb3, devnet: Devnet) -> Setup:
    a = devnet.addresses
    owner = devnet.accounts[1][0]
    creation = encode_deployment(
        load_arb_executor_artifact(),
        a["uniswap_v3.factory"],
        {
            a["uniswap_v2.factory"]: UNISWAP_V2_PAIR_INIT_CODE_HASH,
            a["sushiswap.factory"]: UNISWAP_V2_PAIR_INIT_CODE_HASH,
        },
        owner=devnet.accounts[7][0],
    )
    receipt = await send(w3, {"from": owner, "data": creation})
    assert receipt["status"] == 1
    return Setup(w3, devnet, receipt["contractAddress"])


async def fund_executor(setup: Setup, weth_amount: int) -> None:
    weth = setup.w3.eth.contract(address=setup.weth, abi=load_abi("ERC20"))
    await weth.functions.transfer(setup.executor, weth_amount).transact({"from": setup.owner})


async def test_arbitrage_from_own_balance_realises_predicted_profit(setup: Setup) -> None:
    w3 = setup.w3
    amount_in = 20 * 10**18
    await fund_executor(setup, amount_in)
    await open_price_gap(setup)
    predicted_profit = await predict_final_amount(setup, amount_in) - amount_in
    assert predicted_profit > 10**17  # the engineered gap is worth capturing
    before = await token_snapshot(setup)

    calldata = encode_execute(setup.route, setup.weth, amount_in, predicted_profit, FAR_DEADLINE)
    receipt = await send(w3, {"from": setup.owner, "to": setup.executor, "data": calldata})

    assert receipt["status"] == 1
    after = await token_snapshot(setup)
    realised = after[(setup.weth, setup.executor)] - before[(setup.weth, setup.executor)]
    assert realised == predicted_profit
    # Nothing stranded mid-route: the executor holds no USDC or DAI.
    assert after[(setup.usdc, setup.executor)] == before[(setup.usdc, setup.executor)] == 0
    assert after[(setup.dai, setup.executor)] == before[(setup.dai, setup.executor)] == 0
    events = setup.contract.events.ArbitrageExecuted().process_receipt(
        receipt,
        errors=DISCARD,  # the pools' and tokens' own logs are not ours
    )
    assert [(e["args"]["startToken"], e["args"]["profit"]) for e in events] == [
        (setup.weth, predicted_profit)
    ]


async def test_flash_loan_arbitrage_needs_no_capital(setup: Setup) -> None:
    w3 = setup.w3
    amount_in = 20 * 10**18
    await open_price_gap(setup)
    predicted_profit = await predict_final_amount(setup, amount_in) - amount_in
    assert await balance_of(w3, setup.weth, setup.executor) == 0

    calldata = encode_execute_with_flash_loan(
        setup.route, setup.weth, amount_in, predicted_profit, FAR_DEADLINE
    )
    receipt = await send(w3, {"from": setup.owner, "to": setup.executor, "data": calldata})

    assert receipt["status"] == 1
    assert await balance_of(w3, setup.weth, setup.executor) == predicted_profit
    assert await balance_of(w3, setup.usdc, setup.executor) == 0
    assert await balance_of(w3, setup.dai, setup.executor) == 0


@pytest.mark.parametrize("flash", [False, True])
async def test_v2_to_v2_round_trip_sends_output_straight_to_the_next_pair(
    setup: Setup, flash: bool
) -> None:
    """WETH -> USDC on uniswap_v2, USDC -> WETH on sushiswap: the first pair pays the second
    directly (or, in a flash swap, the executor forwards the borrowed USDC)."""
    w3, a = setup.w3, setup.devnet.addresses
    first = setup.route[0]
    back = Hop(
        HopKind.V2,
        v2_pair_address(a["sushiswap.factory"], setup.usdc, setup.weth),
        setup.usdc,
        setup.weth,
        3000,
        a["sushiswap.factory"],
    )
    route = (first, back)
    amount_in = 10 * 10**18
    if not flash:
        await fund_executor(setup, amount_in)
    await open_price_gap(setup)
    predicted_profit = await predict_final_amount(setup, amount_in, route) - amount_in
    assert predicted_profit > 0
    held_before = await balance_of(w3, setup.weth, setup.executor)
    encoder = encode_execute_with_flash_loan if flash else encode_execute
    calldata = encoder(route, setup.weth, amount_in, predicted_profit, FAR_DEADLINE)

    receipt = await send(w3, {"from": setup.owner, "to": setup.executor, "data": calldata})

    assert receipt["status"] == 1
    held_after = await balance_of(w3, setup.weth, setup.executor)
    assert held_after - held_before == predicted_profit
    assert await balance_of(w3, setup.usdc, setup.executor) == 0


@pytest.mark.parametrize("flash", [False, True])
async def test_min_profit_above_available_reverts_and_moves_nothing(
    setup: Setup, flash: bool
) -> None:
    w3 = setup.w3
    amount_in = 20 * 10**18
    if not flash:
        await fund_executor(setup, amount_in)
    await open_price_gap(setup)
    available = await predict_final_amount(setup, amount_in) - amount_in
    encoder = encode_execute_with_flash_loan if flash else encode_execute
    calldata = encoder(setup.route, setup.weth, amount_in, available + 1, FAR_DEADLINE)
    tx = {"from": setup.owner, "to": setup.executor, "data": calldata}
    held = 0 if flash else amount_in

    reason = await revert_reason(w3, tx)
    assert reason == (
        f"InsufficientProfit(balance_before={held}, balance_after={held + available}, "
        f"min_profit={available + 1})"
    )
    before = await token_snapshot(setup)
    receipt = await send(w3, tx)
    assert receipt["status"] == 0
    assert await token_snapshot(setup) == before


async def test_v3_callback_from_anyone_but_the_pool_in_flight_is_rejected(
    setup: Setup,
) -> None:
    w3 = setup.w3
    await fund_executor(setup, 5 * 10**18)
    weth_usdc_pool = v3_pool_address(
        setup.devnet.addresses["uniswap_v3.factory"], setup.weth, setup.usdc, 500
    )
    weth_is_token0 = int(setup.weth, 16) < int(setup.usdc, 16)
    deltas = (10**18, -(10**9)) if weth_is_token0 else (-(10**9), 10**18)
    data = encode(["address", "address", "uint24"], [setup.weth, setup.usdc, 500])
    calldata = setup.contract.encode_abi("uniswapV3SwapCallback", [*deltas, data])
    before = await token_snapshot(setup)

    # A stranger pretending to be the pool.
    tx = {"from": setup.stranger, "to": setup.executor, "data": calldata}
    assert await revert_reason(w3, tx) == f"UnauthorizedCallback(caller={setup.stranger})"
    assert (await send(w3, tx))["status"] == 0

    # Even the genuine pool cannot pull funds outside a swap the executor started.
    await w3.provider.make_request("anvil_impersonateAccount", [weth_usdc_pool])
    await w3.provider.make_request("anvil_setBalance", [weth_usdc_pool, hex(10**18)])
    tx = {"from": weth_usdc_pool, "to": setup.executor, "data": calldata}
    assert await revert_reason(w3, tx) == f"UnauthorizedCallback(caller={weth_usdc_pool})"
    assert (await send(w3, tx))["status"] == 0

    assert await token_snapshot(setup) == before


async def test_v2_flash_callback_started_by_a_stranger_is_rejected(setup: Setup) -> None:
    """Anyone can name the executor as the recipient of pair.swap; its callback must refuse."""
    w3 = setup.w3
    await fund_executor(setup, 5 * 10**18)
    pair_address = setup.route[0].pool
    pair = w3.eth.contract(address=pair_address, abi=load_abi("UniswapV2Pair"))
    weth_is_token0 = int(setup.weth, 16) < int(setup.usdc, 16)
    usdc_out = 1_000 * 10**6
    amounts = (0, usdc_out) if weth_is_token0 else (usdc_out, 0)
    before = await token_snapshot(setup)
    tx = {
        "from": setup.stranger,
        "to": pair_address,
        "data": pair.encode_abi("swap", [*amounts, setup.executor, b"\x01"]),
    }
    assert await revert_reason(w3, tx) == f"UnauthorizedCallback(caller={pair_address})"
    assert (await send(w3, tx))["status"] == 0
    # Calling the callback directly is refused as well.
    direct = setup.contract.encode_abi("uniswapV2Call", [setup.executor, 0, usdc_out, b"\x01"])
    tx = {"from": setup.stranger, "to": setup.executor, "data": direct}
    assert await revert_reason(w3, tx) == f"UnauthorizedCallback(caller={setup.stranger})"
    assert await token_snapshot(setup) == before


async def test_only_the_executor_key_trades_and_only_the_owner_administers(setup: Setup) -> None:
    w3, contract = setup.w3, setup.contract
    await fund_executor(setup, 5 * 10**18)
    await open_price_gap(setup)
    trading = [
        encode_execute(setup.route, setup.weth, 10**18, 0, FAR_DEADLINE),
        encode_execute_with_flash_loan(setup.route, setup.weth, 10**18, 0, FAR_DEADLINE),
        contract.encode_abi("withdrawToken", [setup.weth, 10**18]),
        contract.encode_abi("withdrawEth", [0]),
    ]
    for calldata in trading:
        tx = {"from": setup.stranger, "to": setup.executor, "data": calldata}
        assert await revert_reason(w3, tx) == "NotExecutor()"
    administration = [
        contract.encode_abi("setV2Factory", [setup.stranger, b"\x11" * 32]),
        contract.encode_abi("setExecutor", [setup.stranger]),
    ]
    for caller in (setup.stranger, setup.owner):  # the hot trading key cannot either
        for calldata in administration:
            tx = {"from": caller, "to": setup.executor, "data": calldata}
            assert await revert_reason(w3, tx) == "NotOwner()"
    assert await balance_of(w3, setup.weth, setup.executor) == 5 * 10**18
    assert await contract.functions.executor().call() == setup.owner


async def test_withdrawals_go_to_the_cold_owner_whoever_asks(setup: Setup) -> None:
    w3, contract = setup.w3, setup.contract
    await fund_executor(setup, 5 * 10**18)
    receipt = await send(w3, {"from": setup.trader, "to": setup.executor, "value": 3 * 10**18})
    assert receipt["status"] == 1
    cold = setup.cold_owner
    weth_before = await balance_of(w3, setup.weth, cold)
    eth_before = await w3.eth.get_balance(cold)
    hot_weth_before = await balance_of(w3, setup.weth, setup.owner)

    # the hot trading key asks: the funds still go to the owner, nowhere else
    for calldata in (
        contract.encode_abi("withdrawToken", [setup.weth, 2 * 10**18]),
        contract.encode_abi("withdrawEth", [3 * 10**18]),
    ):
        receipt = await send(w3, {"from": setup.owner, "to": setup.executor, "data": calldata})
        assert receipt["status"] == 1

    assert await balance_of(w3, setup.weth, cold) == weth_before + 2 * 10**18
    assert await balance_of(w3, setup.weth, setup.executor) == 3 * 10**18
    assert await w3.eth.get_balance(cold) == eth_before + 3 * 10**18
    assert await w3.eth.get_balance(setup.executor) == 0
    assert await balance_of(w3, setup.weth, setup.owner) == hot_weth_before

    # the cold owner rotates the trading key; the old one can no longer trade
    rotate = contract.encode_abi("setExecutor", [setup.trader])
    receipt = await send(w3, {"from": cold, "to": setup.executor, "data": rotate})
    assert receipt["status"] == 1
    calldata = encode_execute(setup.route, setup.weth, 10**18, 0, FAR_DEADLINE)
    tx = {"from": setup.owner, "to": setup.executor, "data": calldata}
    assert await revert_reason(w3, tx) == "NotExecutor()"


async def test_expired_deadline_and_forged_routes_are_refused(setup: Setup) -> None:
    w3 = setup.w3
    await fund_executor(setup, 5 * 10**18)
    latest = await w3.eth.get_block("latest")
    first, second, third = setup.route
    other_v3_pool = v3_pool_address(
        setup.devnet.addresses["uniswap_v3.factory"], setup.usdc, setup.dai, 500
    )
    cases = [
        # Deadline already passed.
        (setup.route, latest["timestamp"] - 1, "DeadlineExpired"),
        # A pool that is not the one the factory derives for the hop's tokens and fee.
        ((first, Hop(**{**_fields(second), "pool": other_v3_pool}), third), None, "InvalidHop"),
        # A V2 factory the executor was not told about (its pairs could be anything).
        ((Hop(**{**_fields(first), "factory": setup.stranger}), second, third), None, "Unknown"),
        # Not a cycle: ends in DAI.
        ((first, second), None, "BrokenRoute"),
    ]
    for route, deadline, expected in cases:
        calldata = encode_execute(route, setup.weth, 10**18, 0, deadline or FAR_DEADLINE)
        tx = {"from": setup.owner, "to": setup.executor, "data": calldata}
        reason = await revert_reason(w3, tx)
        assert reason is not None and reason.startswith(expected), (expected, reason)
    # A flash loan must start on a V2 pair.
    v3_first = (second, third, first)
    calldata = encode_execute_with_flash_loan(v3_first, setup.usdc, 10**6, 0, FAR_DEADLINE)
    tx = {"from": setup.owner, "to": setup.executor, "data": calldata}
    assert await revert_reason(w3, tx) == "InvalidHop(index=0)"


def _fields(hop: Hop) -> dict[str, Any]:
    return {name: getattr(hop, name) for name in Hop.__slots__}
