"""Placing, listing and cancelling conditional orders: one validation for the CLI and Telegram.

An order is written to the journal only; the running agent's ``orders`` strategy picks it up
at its next tick (``strategies.orders`` says when each kind fires). Telegram takes the same
words as the command line::

    /order add stop-loss sell 0.5 WETH/USDC 2700
    /order add take-profit sell 0.5 WETH/USDC 3300 oco 7
    /order add trailing-stop sell 0.5 WETH/USDC trail 50        (or: trail 2%)
    /order list
    /order cancel 7
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from agent.errors import OrderRejected
from agent.store.journal import Journal
from agent.types import ORDER_KINDS, ConditionalOrder
from strategies._directional import pair_ref

ORDER_HELP = (
    "/order add KIND SIDE AMOUNT BASE/QUOTE PRICE [oco ID]\n"
    "/order add trailing-stop SIDE AMOUNT BASE/QUOTE trail DISTANCE|PCT% [oco ID]\n"
    "  KIND: limit, stop-loss, take-profit; SIDE: buy (AMOUNT in QUOTE) or sell (in BASE)\n"
    "/order list - active orders\n"
    "/order cancel ID"
)


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An order as asked for, before validation (see ``ConditionalOrder`` for the units)."""

    kind: str
    side: str
    pair: str
    amount: str
    price: str | None = None
    trail: str | None = None  # "50" (quote per base) or "2%"
    oco_with: int | None = None


@dataclass(frozen=True, slots=True)
class ValidOrder:
    kind: str
    side: str
    pair: str
    amount: Decimal
    trigger_price: Decimal | None
    trail_distance: Decimal | None
    trail_pct: Decimal | None
    oco_with: int | None


def _positive(value: str, what: str) -> Decimal:
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        raise OrderRejected(f"{what} must be a number, got {value!r}") from None
    if not number.is_finite() or number <= 0:
        raise OrderRejected(f"{what} must be above 0, got {value!r}")
    return number


def validate(request: OrderRequest) -> ValidOrder:
    """The order in canonical form; ``OrderRejected`` names the first field that is wrong."""
    kind = request.kind.strip().lower().replace("-", "_")
    if kind not in ORDER_KINDS:
        kinds = ", ".join(k.replace("_", "-") for k in ORDER_KINDS)
        raise OrderRejected(f"order kind must be one of {kinds}, got {request.kind!r}")
    side = request.side.strip().lower()
    if side not in ("buy", "sell"):
        raise OrderRejected(f"side must be buy or sell, got {request.side!r}")
    try:
        pair = pair_ref(request.pair)
    except ValueError as exc:
        raise OrderRejected(f"pair {request.pair!r}: {exc}") from None
    amount = _positive(request.amount, "amount")
    trigger: Decimal | None = None
    distance: Decimal | None = None
    pct: Decimal | None = None
    if kind == "trailing_stop":
        if request.price is not None:
            raise OrderRejected("a trailing stop takes a trail (distance or percent), no price")
        if request.trail is None:
            raise OrderRejected("a trailing stop needs a trail: a distance (50) or percent (2%)")
        trail = request.trail.strip()
        if trail.endswith("%"):
            pct = _positive(trail[:-1], "trail percent")
            if pct >= 100:
                raise OrderRejected(f"trail percent must be below 100, got {trail!r}")
        else:
            distance = _positive(trail, "trail distance")
    else:
        if request.trail is not None:
            raise OrderRejected(f"only a trailing stop takes a trail, not a {kind}")
        if request.price is None:
            raise OrderRejected(f"a {kind.replace('_', '-')} order needs a price")
        trigger = _positive(request.price, "price")
    return ValidOrder(kind, side, pair, amount, trigger, distance, pct, request.oco_with)


async def place_order(journal: Journal, request: OrderRequest, placed_by: str) -> ConditionalOrder:
    """Validate and journal ``request`` as a pending order (``OrderRejected`` if wrong)."""
    order = validate(request)
    return await journal.add_order(
        kind=order.kind,
        side=order.side,
        pair=order.pair,
        amount=order.amount,
        trigger_price=order.trigger_price,
        trail_distance=order.trail_distance,
        trail_pct=order.trail_pct,
        oco_with=order.oco_with,
        placed_by=placed_by,
    )


def describe(order: ConditionalOrder) -> str:
    """One line for an operator: what the order does and where it stands."""
    base, _, quote = order.pair.partition("/")
    spends = base if order.side == "sell" else quote
    what = f"#{order.id} {order.kind.replace('_', '-')} {order.side} {order.amount} {spends}"
    if order.kind == "trailing_stop":
        trail = f"{order.trail_pct}%" if order.trail_pct is not None else f"{order.trail_distance}"
        peak = (
            f", {'peak' if order.side == 'sell' else 'trough'} {order.peak:.6g}"
            if (order.peak is not None)
            else ""
        )
        condition = f"trail {trail}{peak}"
    else:
        condition = f"at {order.trigger_price}"
    line = f"{what} on {order.pair} {condition}: {order.status}"
    if order.oco_group is not None:
        line += f" (OCO group {order.oco_group})"
    if order.reason:
        line += f" - {order.reason}"
    return line


def parse_words(words: list[str]) -> OrderRequest:
    """``KIND SIDE AMOUNT PAIR PRICE [oco ID]`` or ``trailing-stop SIDE AMOUNT PAIR trail T
    [oco ID]`` (the words after ``/order add``)."""
    if len(words) < 5:
        raise OrderRejected(f"not enough words for an order\n{ORDER_HELP}")
    kind, side, amount, pair, *rest = words
    price: str | None = None
    trail: str | None = None
    oco_with: int | None = None
    while rest:
        word = rest.pop(0).lower()
        if word in ("trail", "oco") and not rest:
            raise OrderRejected(f"{word} needs a value\n{ORDER_HELP}")
        if word == "trail":
            trail = rest.pop(0)
        elif word == "oco":
            value = rest.pop(0).lstrip("#")
            if not value.isdigit():
                raise OrderRejected(f"oco takes an order id, got {value!r}")
            oco_with = int(value)
        elif price is None:
            price = word
        else:
            raise OrderRejected(f"unexpected {word!r}\n{ORDER_HELP}")
    return OrderRequest(kind, side, pair, amount, price, trail, oco_with)


async def order_command(journal: Journal, argument: str, who: str) -> str:
    """The reply to ``/order <argument>`` (``add``, ``list``, ``cancel``); a bad order is
    answered with what is wrong, never raised."""
    words = argument.split()
    action = words[0].lower() if words else "help"
    try:
        if action == "add":
            order = await place_order(journal, parse_words(words[1:]), who)
            return f"placed {describe(order)}"
        if action == "list":
            orders = await journal.list_orders(active_only=True)
            return "\n".join(describe(o) for o in orders) if orders else "no active orders"
        if action == "cancel" and len(words) == 2 and words[1].lstrip("#").isdigit():
            order = await journal.cancel_order(int(words[1].lstrip("#")), f"cancelled by {who}")
            return f"cancelled {describe(order)}"
    except OrderRejected as exc:
        return f"order refused: {exc}"
    return ORDER_HELP
