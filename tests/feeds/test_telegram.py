"""Telegram channel and operator commands against a local fake of the Bot API."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from agent.alerts.base import RiskHalt, TradeFilled, TradeReverted
from agent.alerts.telegram import TELEGRAM_MAX_MESSAGE_CHARS, TelegramBotApi, TelegramNotifier
from agent.alerts.telegram_commands import TelegramCommandListener
from agent.errors import AlertDeliveryError, TemporaryError
from agent.store.db import create_engine, init_db, session_factory
from agent.store.journal import Journal
from tests.fakes.telegram_fake import TelegramFake

BOT_TOKEN = "7000000001:AAH-fake_Token-zQ9xW3vL8mK2pR5sT7uY1a"
OPERATOR_CHAT = 111111
SECOND_OPERATOR_CHAT = 222222
STRANGER_CHAT = 999999
NASTY = "_*[]()~`>#+-=|{}.!\\ <b>not bold</b> & &amp; <script>x</script> \"quoted\" 'single'"


class EngineControl:
    """A small stand-in for the engine's control surface (the engine is built later)."""

    def __init__(self) -> None:
        self.paused = False
        self.pause_reasons: list[str] = []
        self.killed = False
        self.changed = asyncio.Event()

    async def pause(self, reason: str) -> None:
        self.paused = True
        self.pause_reasons.append(reason)
        self.changed.set()

    async def resume(self) -> None:
        self.paused = False
        self.changed.set()

    async def kill(self) -> None:
        self.killed = True
        self.paused = True
        self.changed.set()

    async def status_text(self) -> str:
        return f"mode fork, {'paused' if self.paused else 'trading'}, block 1234"

    async def balance_text(self) -> str:
        return "WETH 1.5\nUSDC 2,500.00 <&>"

    async def pnl_text(self) -> str:
        return "today +12.34 USD"


@pytest.fixture
async def fake() -> AsyncIterator[TelegramFake]:
    async with TelegramFake(BOT_TOKEN) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


def make_api(
    session: aiohttp.ClientSession, fake: TelegramFake, per_chat_rate_per_s: float = 50.0
) -> TelegramBotApi:
    """An API client on the fake; a high per-chat rate so tests that are not about the rate
    limit do not wait on it."""
    return TelegramBotApi(
        session,
        BOT_TOKEN,
        base_url=fake.base_url,
        base_backoff_s=0.01,
        per_chat_rate_per_s=per_chat_rate_per_s,
    )


def filled_event() -> TradeFilled:
    return TradeFilled(
        trade_id="t-42",
        strategy="arbitrage",
        route="WETH->USDC uniswap_v2 -> sushiswap",
        tx_hash="0x" + "ab" * 32,
        block_number=1234,
        predicted_profit_usd=12.34,
        realised_profit_usd=12.30,
        gas_cost_usd=1.05,
    )


async def test_trade_alert_arrives_in_every_alert_chat(
    fake: TelegramFake, session: aiohttp.ClientSession
) -> None:
    notifier = TelegramNotifier(make_api(session, fake), [OPERATOR_CHAT, SECOND_OPERATOR_CHAT])

    await notifier.send(filled_event())

    for chat_id in (OPERATOR_CHAT, SECOND_OPERATOR_CHAT):
        [message] = fake.messages_to(chat_id)
        assert message.parse_mode == "HTML"
        assert "Trade filled: WETH->USDC uniswap_v2 -> sushiswap" in message.visible_text
        assert "realised +12.30 USD vs predicted +12.34 USD" in message.visible_text
        assert "difference: -0.04 USD" in message.visible_text
        assert "<b>" in message.text  # the title is bold, not escaped


async def test_nasty_text_arrives_exactly_as_written(
    fake: TelegramFake, session: aiohttp.ClientSession
) -> None:
    notifier = TelegramNotifier(make_api(session, fake), [OPERATOR_CHAT])

    await notifier.send(RiskHalt(reason=NASTY, detail=f"detail {NASTY}"))

    [message] = fake.messages_to(OPERATOR_CHAT)
    # The fake rejects HTML Telegram would reject, so arriving at all proves valid escaping.
    assert f"Trading halted: {NASTY}" in message.visible_text
    assert f"detail {NASTY}" in message.visible_text


async def test_long_alert_is_split_into_messages_within_the_limit(
    fake: TelegramFake, session: aiohttp.ClientSession
) -> None:
    reason = ("<&> revert " * 500).strip()  # 5,500 characters, ~10,500 once escaped
    notifier = TelegramNotifier(make_api(session, fake), [OPERATOR_CHAT])

    await notifier.send(
        TradeReverted(trade_id="t-1", strategy="arbitrage", route="WETH->USDC", reason=reason)
    )

    messages = fake.messages_to(OPERATOR_CHAT)
    assert len(messages) == 3
    assert all(len(m.text) <= TELEGRAM_MAX_MESSAGE_CHARS for m in messages)
    seen = "".join(m.visible_text.replace("\n", "") for m in messages)
    assert reason in seen
    assert "gas lost: 0.00 USD" in messages[-1].visible_text


async def test_runaway_alert_is_cut_after_three_messages(
    fake: TelegramFake, session: aiohttp.ClientSession
) -> None:
    reason = "x" * 50_000
    notifier = TelegramNotifier(make_api(session, fake), [OPERATOR_CHAT])

    await notifier.send(
        TradeReverted(trade_id="t-1", strategy="arbitrage", route="WETH->USDC", reason=reason)
    )

    messages = fake.messages_to(OPERATOR_CHAT)
    assert len(messages) == 3
    assert all(len(m.text) <= TELEGRAM_MAX_MESSAGE_CHARS for m in messages)
    assert messages[-1].visible_text.endswith("… (truncated)")


async def test_messages_to_one_chat_are_spaced_by_the_rate_limit(
    fake: TelegramFake, session: aiohttp.ClientSession
) -> None:
    api = make_api(session, fake, per_chat_rate_per_s=4.0)

    for index in range(3):
        await api.send_message(OPERATOR_CHAT, f"message {index}")

    times = [m.at for m in fake.messages_to(OPERATOR_CHAT)]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(gap >= 0.25 - 0.01 for gap in gaps), gaps


async def test_429_is_retried_after_the_servers_retry_after(
    fake: TelegramFake, session: aiohttp.ClientSession
) -> None:
    fake.fail_next("sendMessage", 429)
    notifier = TelegramNotifier(make_api(session, fake), [OPERATOR_CHAT])

    await notifier.send(filled_event())

    limited, delivered = [r for r in fake.requests if r.method == "sendMessage"]
    assert (limited.status, delivered.status) == (429, 200)
    # The fake said retry_after=1; the retry must come after that gap (loop clock granularity
    # allows a wake-up a hair early, hence the small tolerance).
    assert delivered.at - limited.at >= 1.0 - 0.01
    assert len(fake.messages_to(OPERATOR_CHAT)) == 1


async def test_server_errors_are_retried_until_delivered(
    fake: TelegramFake, session: aiohttp.ClientSession
) -> None:
    fake.fail_next("sendMessage", 500, 502)
    notifier = TelegramNotifier(make_api(session, fake), [OPERATOR_CHAT])

    await notifier.send(filled_event())

    statuses = [r.status for r in fake.requests if r.method == "sendMessage"]
    assert statuses == [500, 502, 200]
    assert len(fake.messages_to(OPERATOR_CHAT)) == 1


async def test_pause_from_a_stranger_is_ignored_and_logged(
    fake: TelegramFake, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    control = EngineControl()
    listener = TelegramCommandListener(make_api(session, fake), [OPERATOR_CHAT], control)
    fake.push_command(STRANGER_CHAT, "/pause")

    handled = await listener.poll_once(poll_timeout_s=0)

    assert handled == 1
    assert control.paused is False
    assert fake.messages_to(STRANGER_CHAT) == []  # no reply reveals the bot
    rejected = [r for r in caplog.records if "non-allowlisted" in r.getMessage()]
    assert len(rejected) == 1
    assert str(STRANGER_CHAT) in rejected[0].getMessage()
    assert BOT_TOKEN not in caplog.text


async def test_pause_from_the_operator_pauses_trading_and_replies(
    fake: TelegramFake, session: aiohttp.ClientSession
) -> None:
    control = EngineControl()
    listener = TelegramCommandListener(make_api(session, fake), [OPERATOR_CHAT], control)
    fake.push_command(OPERATOR_CHAT, "/pause gas spike <&>")

    await listener.poll_once(poll_timeout_s=0)

    assert control.paused is True
    assert control.pause_reasons == ["gas spike <&>"]
    [reply] = fake.messages_to(OPERATOR_CHAT)
    assert reply.visible_text == "Trading paused: gas spike <&>"


async def test_each_update_is_handled_once_and_confirmed(
    fake: TelegramFake, session: aiohttp.ClientSession
) -> None:
    control = EngineControl()
    listener = TelegramCommandListener(make_api(session, fake), [OPERATOR_CHAT], control)
    update_id = fake.push_command(OPERATOR_CHAT, "/pause")

    assert await listener.poll_once(poll_timeout_s=0) == 1
    assert await listener.poll_once(poll_timeout_s=0) == 0

    assert control.pause_reasons == [
        f"telegram /pause from user {OPERATOR_CHAT} in chat {OPERATOR_CHAT}"
    ]
    polls = [r for r in fake.requests if r.method == "getUpdates"]
    assert "offset" not in polls[0].payload
    assert polls[1].payload["offset"] == update_id + 1
    assert polls[1].payload["timeout"] == 0


async def test_every_command_reaches_the_control_surface(
    fake: TelegramFake, session: aiohttp.ClientSession
) -> None:
    control = EngineControl()
    listener = TelegramCommandListener(
        make_api(session, fake), [OPERATOR_CHAT], control, bot_username="defi_agent_test_bot"
    )
    for text in ("/status", "/balance", "/pnl", "/pause@defi_agent_test_bot", "/resume"):
        fake.push_command(OPERATOR_CHAT, text)
    fake.push_command(OPERATOR_CHAT, "/pause@some_other_bot")  # addressed to another bot

    await listener.poll_once(poll_timeout_s=0)

    replies = [m.visible_text for m in fake.messages_to(OPERATOR_CHAT)]
    assert replies == [
        "mode fork, trading, block 1234",
        "WETH 1.5\nUSDC 2,500.00 <&>",
        "today +12.34 USD",
        f"Trading paused: telegram /pause from user {OPERATOR_CHAT} in chat {OPERATOR_CHAT}",
        "Trading resumed.",
    ]
    assert control.paused is False
    assert len(control.pause_reasons) == 1


async def test_polling_survives_a_server_error(
    fake: TelegramFake, session: aiohttp.ClientSession
) -> None:
    control = EngineControl()
    listener = TelegramCommandListener(make_api(session, fake), [OPERATOR_CHAT], control)
    fake.fail_next("getUpdates", 500)
    fake.push_command(OPERATOR_CHAT, "/pause")

    await listener.poll_once(poll_timeout_s=0)

    assert control.paused is True
    assert [r.status for r in fake.requests if r.method == "getUpdates"] == [500, 200]


async def test_kill_is_acknowledged_and_executed(
    fake: TelegramFake, session: aiohttp.ClientSession
) -> None:
    control = EngineControl()
    listener = TelegramCommandListener(make_api(session, fake), [OPERATOR_CHAT], control)
    fake.push_command(OPERATOR_CHAT, "/kill")

    await listener.poll_once(poll_timeout_s=0)

    assert control.killed is True
    assert "Kill switch engaged" in fake.messages_to(OPERATOR_CHAT)[0].visible_text


async def test_commands_sent_while_the_agent_was_down_are_skipped(
    fake: TelegramFake, session: aiohttp.ClientSession
) -> None:
    control = EngineControl()
    listener = TelegramCommandListener(
        make_api(session, fake), [OPERATOR_CHAT], control, max_command_age_s=300
    )
    fake.push_command(OPERATOR_CHAT, "/kill", date=int(time.time()) - 3600)

    await listener.poll_once(poll_timeout_s=0)

    assert control.killed is False


async def test_long_polling_loop_picks_up_a_command(
    fake: TelegramFake, session: aiohttp.ClientSession
) -> None:
    control = EngineControl()
    listener = TelegramCommandListener(
        make_api(session, fake), [OPERATOR_CHAT], control, poll_timeout_s=5
    )
    async with asyncio.TaskGroup() as group:
        poller = group.create_task(listener.run())
        await asyncio.sleep(0)  # let the first long poll start waiting on the fake
        fake.push_command(OPERATOR_CHAT, "/pause night")
        await asyncio.wait_for(control.changed.wait(), timeout=10)
        poller.cancel()

    assert control.pause_reasons == ["night"]
    [poll, *_] = [r for r in fake.requests if r.method == "getUpdates"]
    assert poll.payload["timeout"] == 5


async def test_token_never_appears_in_logs_or_errors(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    # Unparseable host: aiohttp raises InvalidURL whose text is the whole URL, token included.
    bad_url_api = TelegramBotApi(session, BOT_TOKEN, base_url="http://[::1", max_attempts=1)
    # Nothing listens on port 9: a connection error after retries.
    refused_api = TelegramBotApi(
        session, BOT_TOKEN, base_url="http://127.0.0.1:9", max_attempts=2, base_backoff_s=0.01
    )
    with pytest.raises(AlertDeliveryError) as bad_url:
        await TelegramNotifier(bad_url_api, [OPERATOR_CHAT]).send(filled_event())
    errors.append(bad_url.value)
    with pytest.raises(TemporaryError) as refused:
        await TelegramNotifier(refused_api, [OPERATOR_CHAT]).send(filled_event())
    errors.append(refused.value)

    async with TelegramFake("a-different-token") as wrong_token_fake:
        api = TelegramBotApi(session, BOT_TOKEN, base_url=wrong_token_fake.base_url)
        with pytest.raises(AlertDeliveryError) as rejected:
            await api.send_message(OPERATOR_CHAT, "hi")
        errors.append(rejected.value)

    for error in errors:
        assert BOT_TOKEN not in str(error)
        assert BOT_TOKEN not in repr(error)
        assert error.__context__ is None and error.__cause__ is None
    # aiohttp's InvalidURL text is the whole URL: it arrives with the token masked.
    assert (
        str(errors[0]) == "telegram sendMessage: invalid URL http://[::1/bot<redacted>/sendMessage"
    )
    assert BOT_TOKEN not in caplog.text
    assert BOT_TOKEN not in repr(bad_url_api)


# --- who may command the agent ------------------------------------------------------------

GROUP_CHAT = -1001234567890
OPERATOR_USER = OPERATOR_CHAT  # the operator's private chat id is their user id
MEMBER_USER = 555555  # a member of the operators' group who is not an operator


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    engine = await init_db(f"sqlite:///{tmp_path / 'journal.db'}")
    try:
        yield Journal(session_factory(engine))
    finally:
        await engine.dispose()


def group_listener(
    session: aiohttp.ClientSession, fake: TelegramFake, control: EngineControl, journal: Journal
) -> TelegramCommandListener:
    return TelegramCommandListener(
        make_api(session, fake),
        [OPERATOR_CHAT, GROUP_CHAT],
        control,
        allowed_user_ids=[OPERATOR_USER],
        journal=journal,
    )


async def test_only_allowlisted_users_command_the_agent_in_an_allowlisted_group(
    fake: TelegramFake, session: aiohttp.ClientSession, journal: Journal
) -> None:
    control = EngineControl()
    listener = group_listener(session, fake, control, journal)
    fake.push_command(GROUP_CHAT, "/pause", user_id=MEMBER_USER)
    fake.push_command(GROUP_CHAT, "/balance", user_id=MEMBER_USER)
    fake.push_command(GROUP_CHAT, "/pnl", user_id=MEMBER_USER)

    await listener.poll_once(poll_timeout_s=0)

    assert control.paused is False
    assert fake.sent_messages == []  # no balance, no PnL, not even a refusal
    actions = await journal.list_control_actions()
    assert [(a.action, a.accepted, a.detail) for a in actions] == [
        ("pause", False, "non-allowlisted user"),
        ("balance", False, "non-allowlisted user"),
        ("pnl", False, "non-allowlisted user"),
    ]
    assert all(a.actor == f"telegram user {MEMBER_USER} in chat {GROUP_CHAT}" for a in actions)

    fake.push_command(GROUP_CHAT, "/pause deploy", user_id=OPERATOR_USER)
    await listener.poll_once(poll_timeout_s=0)

    assert control.pause_reasons == ["deploy"]
    assert [m.visible_text for m in fake.messages_to(GROUP_CHAT)] == ["Trading paused: deploy"]
    last = (await journal.list_control_actions())[-1]
    assert (last.source, last.actor, last.action, last.argument, last.accepted) == (
        "telegram",
        f"telegram user {OPERATOR_USER} in chat {GROUP_CHAT}",
        "pause",
        "deploy",
        True,
    )


async def test_anonymous_admin_channel_post_and_forwarded_commands_are_refused(
    fake: TelegramFake, session: aiohttp.ClientSession, journal: Journal
) -> None:
    control = EngineControl()
    control.paused = True  # a halt the operator has not lifted
    listener = group_listener(session, fake, control, journal)
    group = {"id": GROUP_CHAT, "type": "supergroup", "title": "Operators"}
    # An anonymous admin: Telegram sends it from GroupAnonymousBot, on behalf of the group.
    fake.push_command(
        GROUP_CHAT,
        "/resume",
        sender={
            "id": 1087968824,
            "is_bot": True,
            "first_name": "Group",
            "username": "GroupAnonymousBot",
        },
        extra={"sender_chat": group},
    )
    # The operator forwards a /resume someone else wrote: the author is not the operator.
    fake.push_command(
        OPERATOR_CHAT,
        "/resume",
        extra={
            "forward_origin": {"type": "user", "date": 1, "sender_user": {"id": MEMBER_USER}},
            "forward_from": {"id": MEMBER_USER, "is_bot": False, "first_name": "M"},
            "forward_date": 1,
        },
    )
    # A forward whose author hides their account: only forward_origin/forward_date remain.
    fake.push_command(
        GROUP_CHAT,
        "/kill",
        user_id=OPERATOR_USER,
        extra={"forward_origin": {"type": "hidden_user", "date": 1, "sender_user_name": "x"}},
    )
    # A channel post (posted as the channel, no user).
    fake.push_command(GROUP_CHAT, "/resume", chat_type="channel", update_kind="channel_post")

    assert await listener.poll_once(poll_timeout_s=0) == 4

    assert control.paused is True and control.killed is False
    assert fake.sent_messages == []
    refused = [(a.action, a.accepted, a.detail) for a in await journal.list_control_actions()]
    assert refused == [
        ("resume", False, "sent on behalf of a chat (anonymous admin or channel)"),
        ("resume", False, "forwarded message"),
        ("kill", False, "forwarded message"),
        ("resume", False, "channel post"),
    ]
    assert listener.commands_rejected == 4 and listener.commands_executed == 0


async def test_a_journal_outage_does_not_block_the_operators_pause(
    fake: TelegramFake, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    engine = await init_db(f"sqlite:///{tmp_path / 'journal.db'}")
    await engine.dispose()
    (tmp_path / "journal.db").unlink()
    (tmp_path / "journal.db").mkdir()  # the file is gone and cannot be re-created
    broken = Journal(session_factory(create_engine(f"sqlite:///{tmp_path / 'journal.db'}")))
    control = EngineControl()
    listener = TelegramCommandListener(
        make_api(session, fake), [OPERATOR_CHAT], control, journal=broken
    )
    fake.push_command(OPERATOR_CHAT, "/pause")

    await listener.poll_once(poll_timeout_s=0)

    assert control.paused is True
