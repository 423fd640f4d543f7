"""Strategies by name: the explicit map the engine and the config use (no registry magic)."""

from __future__ import annotations

from strategies.arbitrage import ArbitrageStrategy
from strategies.cex_dex import CexDexStrategy
from strategies.dca import DcaStrategy
from strategies.grid import GridStrategy
from strategies.orders import OrdersStrategy
from strategies.signal import SignalStrategy
from strategies.whale_follow import WhaleFollowStrategy

STRATEGIES: dict[str, type] = {
    ArbitrageStrategy.name: ArbitrageStrategy,
    CexDexStrategy.name: CexDexStrategy,
    GridStrategy.name: GridStrategy,
    DcaStrategy.name: DcaStrategy,
    WhaleFollowStrategy.name: WhaleFollowStrategy,
    SignalStrategy.name: SignalStrategy,
    OrdersStrategy.name: OrdersStrategy,
}
