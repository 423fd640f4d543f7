"""Operator commands over Telegram: ``getUpdates`` long polling -> a ``ControlSurface``.

/status /balance /pnl /pause [reason] /resume /kill, obeyed only from allowlisted chat ids.
Anything else is logged by chat id (never the token: requests go through ``TelegramBotApi``)
and dropped without a reply.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from agent.alerts.control import ControlSurface
from agent.alerts.ratelimit import Clock, Sleep
from agent.alerts.telegram import TelegramBotApi, render_plain_html
from agent.errors import AlertDeliveryError, RateLimitedError, TemporaryError

logger = logging.getLogger(__name__)

_HELP_TEXT = (
    "Commands:\n"
    "/status - agent state\n"
    "/balance - wallet balances\n"
    "/pnl - profit and loss\n"
    "/pause [reason] - stop opening trades\n"
    "/resume - resume trading\n"
    "/kill - halt trading and stop the agent"
)


class TelegramCommandListener:
    """Operator commands by ``getUpdates`` long polling, executed on a ``ControlSurface``.

    Only chats in ``allowed_chat_ids`` are obeyed; commands from any other chat are logged (chat
    id only) and dropped without a reply. Each update is handled at most once: the offset moves
    past an update before it is handled, and commands older than ``max_command_age_s`` (sent
    while the agent was down) are skipped. The owner runs ``run()`` in its TaskGroup and cancels
    it on shutdown.
    """

    COMMANDS = frozenset({"status", "balance", "pnl", "pause", "resume", "kill", "help", "start"})

    def __init__(
        self,
        api: TelegramBotApi,
        allowed_chat_ids: Iterable[int],
        control: ControlSurface,
        *,
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
        message = update.get("message")
        if not isinstance(message, dict):
            return
        chat = message.get("chat")
        text = message.get("text")
        if not isinstance(chat, dict) or not isinstance(chat.get("id"), int):
            return
        chat_id: int = chat["id"]
        if not isinstance(text, str) or not text.startswith("/"):
            return
        head, _, argument = text.strip().partition(" ")
        command, _, addressee = head[1:].partition("@")
        command = command.lower()
        if addressee and self._bot_username and addressee.lower() != self._bot_username:
            return  # a command for another bot in the same group
        if chat_id not in self._allowed_chat_ids:
            self.commands_rejected += 1
            # %r: the text is a stranger's, it must not forge log lines.
            logger.warning(
                "telegram command %r from non-allowlisted chat %d ignored",
                "/" + command[:32],
                chat_id,
            )
            return
        sent_at = message.get("date")
        if isinstance(sent_at, int) and self._wall_clock() - sent_at > self._max_command_age_s:
            logger.warning("telegram command %r from chat %d is stale, skipped", command, chat_id)
            return
        logger.info("telegram command %r from chat %d", "/" + command[:32], chat_id)
        reply = await self._execute(command, argument.strip(), chat_id)
        await self._reply(chat_id, reply)

    async def _execute(self, command: str, argument: str, chat_id: int) -> str:
        if command not in self.COMMANDS:
            return f"Unknown command /{command}.\n{_HELP_TEXT}"
        if command in {"help", "start"}:
            return _HELP_TEXT
        if command == "kill":
            # Acknowledge first: kill shuts the agent down, which may cancel this listener.
            await self._reply(chat_id, "Kill switch engaged: halting trading and stopping.")
        try:
            async with asyncio.timeout(self._command_timeout_s):
                reply = await self._dispatch(command, argument, chat_id)
        except Exception as exc:
            logger.exception("telegram command /%s failed", command)
            return f"/{command} failed: {type(exc).__name__}"
        self.commands_executed += 1
        return reply

    async def _dispatch(self, command: str, argument: str, chat_id: int) -> str:
        control = self._control
        if command == "status":
            return await control.status_text()
        if command == "balance":
            return await control.balance_text()
        if command == "pnl":
            return await control.pnl_text()
        if command == "pause":
            reason = argument or f"telegram /pause from chat {chat_id}"
            await control.pause(reason)
            return f"Trading paused: {reason}"
        if command == "resume":
            await control.resume()
            return "Trading resumed."
        await control.kill()
        return "Kill switch done."

    async def _reply(self, chat_id: int, text: str) -> None:
        try:
            for text_html in render_plain_html(text):
                await self._api.send_message(chat_id, text_html)
        except (AlertDeliveryError, TemporaryError) as exc:
            logger.warning("telegram reply to chat %d failed: %s", chat_id, exc)
