"""The console's "why no trade" counts: refusals per reason per time bucket, from the ticks the
bus carried, quiet buckets as zeros; events reach open streams as JSON-safe values."""

from __future__ import annotations

from agent.console.live import LiveFeed
from agent.events import EventBus, Refusal, Tick, TradeSent


def test_refusals_are_counted_per_reason_per_bucket_with_quiet_buckets_as_zeros() -> None:
    bus = EventBus()
    live = LiveFeed()
    live.subscribe(bus)
    bus.publish(
        Tick(
            at=600.0,
            block=1,
            opportunities=3,
            approved=0,
            started=0,
            refusals=(("paused", 2), ("stale", 1)),
        )
    )
    bus.publish(
        Tick(at=659.0, block=2, opportunities=1, approved=0, started=0, refusals=(("paused", 1),))
    )
    bus.publish(
        Tick(at=780.5, block=3, opportunities=2, approved=1, started=1, refusals=(("cooldown", 1),))
    )

    view = live.refusals_over_time(60.0)

    assert [b["start"] for b in view["buckets"]] == [540.0, 600.0, 660.0, 720.0, 780.0]
    assert [b["opportunities"] for b in view["buckets"]] == [0, 4, 0, 0, 2]
    assert view["buckets"][1]["refusals"] == {"paused": 3, "stale": 1}
    assert view["buckets"][4]["refusals"] == {"cooldown": 1}
    assert view["totals"] == {"paused": 3, "stale": 1, "cooldown": 1}
    assert list(live.refusals_over_time(60.0, since=700.0)["totals"]) == ["cooldown"]


def test_open_streams_get_every_event_and_a_slow_one_loses_only_its_oldest() -> None:
    bus = EventBus()
    live = LiveFeed()
    live.subscribe(bus)
    stream = live.open_stream()
    amount = 5 * 10**24  # past 2**53: sent as a string, exact
    bus.publish(
        TradeSent(
            trade_id="t1",
            strategy="arbitrage",
            route="a>b",
            tx_hash="0xab",
            token_in="0xtoken",
            amount_in_wei=amount,
            predicted_profit_usd=1.5,
        )
    )
    body = stream.get_nowait()
    assert body["kind"] == "trade_sent" and body["amount_in_wei"] == str(amount)
    for block in range(stream.maxsize + 5):
        bus.publish(
            Refusal(reason="paused", strategy="grid", opportunity_id=str(block), block=block)
        )
    assert stream.qsize() == stream.maxsize
    assert stream.get_nowait()["block"] == 5  # the five oldest were dropped
    live.close_stream(stream)
    assert live.open_streams == 0
