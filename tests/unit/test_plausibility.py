"""What a lying node or a rogue pool could make the agent believe, and what it believes instead:
implausible heads are refused, absurd pool prices are ignored, each reported once."""

from __future__ import annotations

from agent import events as ev
from agent.alerts import base as cards
from agent.alerts.subscriber import AlertSubscriber
from agent.chain.heads import Header, check_gap, check_time, max_plausible_gap


class Posted:
    def __init__(self) -> None:
        self.cards: list[cards.AlertEvent] = []

    def post(self, event: cards.AlertEvent) -> bool:
        self.cards.append(event)
        return True


def wired() -> tuple[ev.EventBus, Posted]:
    bus = ev.EventBus()
    posted = Posted()
    AlertSubscriber(posted, {}).subscribe(bus)
    return bus, posted


def header(number: int, timestamp: int) -> Header:
    return Header(number, f"0x{number:064x}", f"0x{number - 1:064x}", timestamp)


# --- heads ------------------------------------------------------------------------------------


def test_a_head_a_billion_blocks_ahead_is_refused_whatever_the_chain() -> None:
    for block_time_s in (0.05, 0.25, 2.0, 12.0):
        refusal = check_gap(20_000_000, 10**9, elapsed_s=12.0, block_time_s=block_time_s)
        assert refusal is not None and refusal.reason == "too_far_ahead"
        assert "980000000 blocks past the last good head 20000000" in refusal.detail


def test_the_next_heads_and_a_catch_up_after_an_outage_are_plausible() -> None:
    assert check_gap(100, 101, elapsed_s=12.0, block_time_s=12.0) is None
    assert check_gap(100, 110, elapsed_s=0.5, block_time_s=12.0) is None  # a burst
    # an hour without heads on Ethereum: ~300 blocks came, all plausible
    assert check_gap(100, 400, elapsed_s=3600.0, block_time_s=12.0) is None
    # the same gap a minute after the last head is not
    assert check_gap(100, 400 + 256, elapsed_s=60.0, block_time_s=12.0) is not None


def test_the_allowance_grows_with_elapsed_time_at_a_tolerant_rate() -> None:
    assert max_plausible_gap(0.0, 12.0) == max_plausible_gap(-5.0, 12.0)
    assert max_plausible_gap(120.0, 12.0) - max_plausible_gap(0.0, 12.0) == 40  # 4x 10 blocks
    assert max_plausible_gap(1.0, 0.25) - max_plausible_gap(0.0, 0.25) == 16


def test_a_newer_head_timestamped_before_the_last_good_one_is_refused() -> None:
    last = header(100, 1_700_000_000)
    assert check_time(last, header(101, 1_700_000_012)) is None
    assert check_time(last, header(101, 1_700_000_000)) is None  # L2s share seconds
    refusal = check_time(last, header(101, 1_699_999_000))
    assert refusal is not None and refusal.reason == "time_backwards"


def test_a_run_of_refused_heads_alerts_once_and_again_only_after_a_plausible_head() -> None:
    bus, posted = wired()
    for number in (10**9, 10**9 + 1, 10**9 + 2):
        bus.publish(ev.HeadRefused(number=number, reason="too_far_ahead", last_good=100))
    assert [c.kind for c in posted.cards] == ["head_refused"]
    [card] = posted.cards
    assert isinstance(card, cards.HeadRefused)
    assert "Head refused: block 1000000000" in card.render_text()
    assert "last good head: 100" in card.render_text()

    bus.publish(ev.HeadTrusted(number=101, refused=3))
    bus.publish(ev.HeadRefused(number=5, reason="unconfirmed", last_good=101))
    assert [c.kind for c in posted.cards] == ["head_refused", "head_refused"]
