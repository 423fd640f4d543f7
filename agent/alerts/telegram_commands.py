"""Operator commands over Telegram: ``getUpdates`` long polling -> a ``ControlSurface``.

/status /balance /pnl /pause [reason] /resume /kill /order ... are obeyed only when an
allowlisted USER sends them, as themselves, in an allowlisted chat. Refused whatever the chat:
a message posted as a chat (an anonymous group admin, whose sender is ``GroupAnonymousBot`` with
``sender_chat`` set, or a channel), a channel post, a forwarded message (its author is someone
else, its sender only passes it on), a message from a bot or sent via an inline bot. Every
command, obeyed or refused, is logged (ids only; never the token: requests go through
``TelegramBotApi``) and journaled with who sent it and why it was refused; nobody refused gets
a reply.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.alerts.control import ControlJournal, ControlSurface
from agent.alerts.telegram import TelegramBotApi, render_plain_html
from agent.errors import AlertDeliveryError, RateLimitedError, TemporaryError
from agent.resilience import Clock, Sleep

logger = logging.getLogger(__name__)

# The user Telegram shows as the sender of an anonymous group admin's messages.
GROUP_ANONYMOUS_BOT_ID = 1087968824
# Fields that mark a forwarded message (Bot API 7.0 ``forward_origin``; the older ones too).
_FORWARD_FIELDS = (
    "forward_origin",
    "forward_from",
    "forward_from_chat",
    "forward_from_message_id",
    "forward_sender_name",
    "forward_signature",
    "forward_date",
    "is_automatic_forward",
)
_USERNAME = re.compile(r"[A-Za-z0-9_]{1,32}")

_HELP_TEXT = (
    "Commands:\n"
    "/status - agent state\n"
    "/balance - wallet balances\n"
    "/pnl - profit and loss\n"
    "/pause [reason] - stop opening trades\n"
    "/resume - resume trading\n"
    "/kill - halt trading and stop the agent\n"
    "/order add|list|cancel - conditional orders (/order for help)"
)


@dataclass(frozen=True, slots=True)
class CommandSender:
    """Who sent a command: the user (None when posted as a chat) and the chat it came from."""

    chat_id: int
    user_id: int | None
    username: str | None

    def describe(self) -> str:
        """``telegram user 42 (@op) in chat -1001``: ids only, a username only if well formed."""
        who = "no user" if self.user_id is None else f"user {self.user_id}"
        if self.username:
            who += f" (@{self.username})"
        return f"telegram {who} in chat {self.chat_id}"


class TelegramCommandListener:
    """Operator commands by ``getUpdates`` long polling, executed on a ``ControlSurface``.

    A command is obeyed only from a user in ``allowed_user_ids`` writing in a chat of
    ``allowed_chat_ids``. A private chat's id is its user's id, so an allowlisted private chat
    (a positive id) also allowlists that user; in a group every user must be listed. Anything
    else is refused (see the module docstring), logged and journaled in ``journal`` (when
    given), without a reply. Each update is handled at most once: the offset moves past an
    update before it is handled, and commands older than ``max_command_age_s`` (sent while the
    agent was down) are skipped. The owner runs ``run()`` in its TaskGroup and cancels it on
    shutdown.
    """

    COMMANDS = frozenset(
        {"status", "balance", "pnl", "pause", "resume", "kill", "order", "help", "start"}
    )

    def __init__(
        self,
        api: TelegramBotApi,
        allowed_chat_ids: Iterable[int],
        control: ControlSurface,
        *,
        allowed_user_ids: Iterable[int] = (),
        journal: ControlJournal | None = None,
        poll_timeout_s: int = 25,
        max_command_age_s: float = 300.0,
        command_timeout_s: float = 20.0,
        error_backoff_s: float = 5.0,
        bot_username: str | None = None,
        wall_clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._api = api
        self._allowed_chat_ids = frozenset(allowed_chat_ids)
        # A private chat's id is its user's id: allowlisting it names that user.
        self._allowed_user_ids = frozenset(allowed_user_ids) | {
            chat_id for chat_id in self._allowed_chat_ids if chat_id > 0
        }
        self._journal = journal
        self._control = control
        self._poll_timeout_s = poll_timeout_s
        self._max_command_age_s = max_command_age_s
        self._command_timeout_s = command_timeout_s
        self._error_backoff_s = error_backoff_s
        self._bot_username = bot_username.lstrip("@").lower() if bot_username else None
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._offset: int | None = None
        self.commands_executed = 0
        self.commands_rejected = 0

    @property
    def allowed_chat_ids(self) -> frozenset[int]:
        return self._allowed_chat_ids

    @property
    def allowed_user_ids(self) -> frozenset[int]:
        return self._allowed_user_ids

    @property
    def offset(self) -> int | None:
        """The next update id to ask for; everything below it is confirmed to Telegram."""
        return self._offset

    async def run(self) -> None:
        """Poll until cancelled. A rejected token (401/404) stops polling; it is logged once."""
        while True:
            try:
                await self.poll_once()
            except AlertDeliveryError as exc:
                logger.error("telegram command polling stopped: %s", exc)
                return
            except TemporaryError as exc:
                logger.warning("telegram getUpdates failed, retrying: %s", exc)
                backoff_s = self._error_backoff_s
                if isinstance(exc, RateLimitedError) and exc.retry_after_s is not None:
                    backoff_s = max(backoff_s, exc.retry_after_s)
                await self._sleep(backoff_s)

    async def poll_once(self, poll_timeout_s: int | None = None) -> int:
        """One ``getUpdates`` round; returns how many new updates it handled."""
        timeout_s = self._poll_timeout_s if poll_timeout_s is None else poll_timeout_s
        updates = await self._api.get_updates(self._offset, timeout_s)
        handled = 0
        for update in sorted(updates, key=lambda u: int(u.get("update_id", -1))):
            update_id = update.get("update_id")
            if not isinstance(update_id, int):
                continue
            if self._offset is not None and update_id < self._offset:
                continue  # already handled: a duplicate delivery
            self._offset = update_id + 1
            handled += 1
            await self._handle_update(update)
        return handled

    async def _handle_update(self, update: Mapping[str, Any]) -> None:
        channel_post = update.get("channel_post")
        is_channel_post = isinstance(channel_post, dict)
        message = channel_post if is_channel_post else update.get("message")
        if not isinstance(message, dict):
            return
        chat = message.get("chat")
        text = message.get("text")
        if not isinstance(chat, dict) or not isinstance(chat.get("id"), int):
            return
        if not isinstance(text, str) or not text.startswith("/"):
            return
        head, _, argument = text.strip().partition(" ")
        command, _, addressee = head[1:].partition("@")
        command = command.lower()[:32]
        if addressee and self._bot_username and addressee.lower() != self._bot_username:
            return  # a command for another bot in the same group
        sender = _sender(message)
        refusal = self._refusal(message, sender, is_channel_post=is_channel_post)
        if refusal is not None:
            self.commands_rejected += 1
            # %r: the text is a stranger's, it must not forge log lines.
            logger.warning(
                "telegram command %r from %s refused: %s", "/" + command, sender.describe(), refusal
            )
            if command in self.COMMANDS:
                await self._journal_action(sender, command, argument, False, refusal)
            return
        sent_at = message.get("date")
        if isinstance(sent_at, int) and self._wall_clock() - sent_at > self._max_command_age_s:
            logger.warning(
                "telegram command %r from %s is stale, skipped", "/" + command, sender.describe()
            )
            if command in self.COMMANDS:
                await self._journal_action(
                    sender, command, argument, False, "stale: sent while the agent was down"
                )
            return
        logger.info("telegram command %r from %s", "/" + command, sender.describe())
        if command in self.COMMANDS:
            # Before executing: /kill stops the agent, which may cancel this listener.
            await self._journal_action(sender, command, argument, True, "")
        reply = await self._execute(command, argument.strip(), sender)
        await self._reply(sender.chat_id, reply)

    def _refusal(
        self, message: Mapping[str, Any], sender: CommandSender, *, is_channel_post: bool
    ) -> str | None:
        """Why this message may not command the agent, or None when it may."""
        chat = message.get("chat") or {}
        if is_channel_post or chat.get("type") == "channel":
            return "channel post"
        if sender.chat_id not in self._allowed_chat_ids:
            return "non-allowlisted chat"
        sent_by = message.get("from")
        if "sender_chat" in message or (
            isinstance(sent_by, dict) and sent_by.get("id") == GROUP_ANONYMOUS_BOT_ID
        ):
            return "sent on behalf of a chat (anonymous admin or channel)"
        if any(key in message for key in _FORWARD_FIELDS):
            return "forwarded message"
        if "via_bot" in message:
            return "sent via an inline bot"
        if not isinstance(sent_by, dict) or sender.user_id is None:
            return "no sending user"
        if sent_by.get("is_bot") is True:
            return "sent by a bot"
        if sender.user_id not in self._allowed_user_ids:
            return "non-allowlisted user"
        return None

    async def _journal_action(
        self, sender: CommandSender, command: str, argument: str, accepted: bool, detail: str
    ) -> None:
        if self._journal is None:
            return
        try:
            await self._journal.record_control_action(
                source="telegram",
                actor=sender.describe(),
                action=command,
                accepted=accepted,
                argument=argument.strip()[:200],
                detail=detail,
            )
        except Exception as exc:  # a journal outage must not block /pause
            logger.error("cannot journal telegram /%s: %s", command, type(exc).__name__)

    async def _execute(self, command: str, argument: str, sender: CommandSender) -> str:
        if command not in self.COMMANDS:
            return f"Unknown command /{command}.\n{_HELP_TEXT}"
        if command in {"help", "start"}:
            return _HELP_TEXT
        if command == "kill":
            # Acknowledge first: kill shuts the agent down, which may cancel this listener.
            await self._reply(sender.chat_id, "Kill switch engaged: halting trading and stopping.")
        try:
            async with asyncio.timeout(self._command_timeout_s):
                reply = await self._dispatch(command, argument, sender)
        except Exception as exc:
            logger.exception("telegram command /%s failed", command)
            return f"/{command} failed: {type(exc).__name__}"
        self.commands_executed += 1
        return reply

    async def _dispatch(self, command: str, argument: str, sender: CommandSender) -> str:
        control = self._control
        if command == "status":
            return await control.status_text()
        if command == "balance":
            return await control.balance_text()
        if command == "pnl":
            return await control.pnl_text()
        if command == "pause":
            reason = (
                argument or f"telegram /pause from user {sender.user_id} in chat {sender.chat_id}"
            )
            await control.pause(reason)
            return f"Trading paused: {reason}"
        if command == "resume":
            await control.resume()
            return "Trading resumed."
        if command == "order":
            return await control.order_text(argument, sender.describe())
        await control.kill()
        return "Kill switch done."

    async def _reply(self, chat_id: int, text: str) -> None:
        try:
            for text_html in render_plain_html(text):
                await self._api.send_message(chat_id, text_html)
        except (AlertDeliveryError, TemporaryError) as exc:
            logger.warning("telegram reply to chat %d failed: %s", chat_id, exc)


def _sender(message: Mapping[str, Any]) -> CommandSender:
    chat_id: int = message["chat"]["id"]
    sent_by = message.get("from")
    user_id: int | None = None
    username: str | None = None
    if isinstance(sent_by, dict) and isinstance(sent_by.get("id"), int):
        user_id = sent_by["id"]
        raw_name = sent_by.get("username")
        # Shown in logs and the journal: only a well-formed name, never arbitrary text.
        if isinstance(raw_name, str) and _USERNAME.fullmatch(raw_name):
            username = raw_name
    return CommandSender(chat_id=chat_id, user_id=user_id, username=username)
