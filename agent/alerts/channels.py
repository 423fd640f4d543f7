"""Build the configured alert channels and the Telegram command listener from ``AlertsConfig``.

The engine calls these with its one aiohttp session and its console; nothing here starts a task.
"""

from __future__ import annotations

import logging

import aiohttp
from rich.console import Console

from agent.alerts.base import Severity
from agent.alerts.console import ConsoleNotifier
from agent.alerts.control import ControlJournal, ControlSurface
from agent.alerts.discord import DiscordWebhookNotifier
from agent.alerts.fanout import Channel
from agent.alerts.telegram import TelegramBotApi, TelegramNotifier
from agent.alerts.telegram_commands import TelegramCommandListener
from agent.config.models import AlertsConfig, TelegramAlerts

log = logging.getLogger(__name__)

_LEVELS = {
    "debug": Severity.INFO,  # there are no debug alerts: "debug" means everything
    "info": Severity.INFO,
    "warning": Severity.WARNING,
    "error": Severity.ERROR,
    "critical": Severity.CRITICAL,
}


def telegram_api(config: TelegramAlerts, session: aiohttp.ClientSession) -> TelegramBotApi:
    """One Bot API client per agent: alerts and command replies share its rate limits."""
    if config.bot_token is None:
        raise ValueError("telegram.bot_token is not set")
    return TelegramBotApi(session, config.bot_token, base_url=str(config.api_base_url))


def build_channels(
    config: AlertsConfig,
    session: aiohttp.ClientSession,
    console: Console,
    telegram: TelegramBotApi | None = None,
) -> list[Channel]:
    """Enabled channels, each subscribed from ``config.min_level`` upwards."""
    min_severity = _LEVELS[config.min_level]
    channels: list[Channel] = []
    if config.console.enabled:
        channels.append(Channel(ConsoleNotifier(console), min_severity))
    if config.telegram.enabled and config.telegram.chat_id is not None:
        api = telegram or telegram_api(config.telegram, session)
        channels.append(Channel(TelegramNotifier(api, [config.telegram.chat_id]), min_severity))
    if config.discord.enabled and config.discord.webhook_url is not None:
        notifier = DiscordWebhookNotifier(
            session, config.discord.webhook_url, username=config.discord.username
        )
        channels.append(Channel(notifier, min_severity))
    return channels


def build_command_listener(
    config: TelegramAlerts,
    api: TelegramBotApi,
    control: ControlSurface,
    journal: ControlJournal | None = None,
) -> TelegramCommandListener | None:
    """The /pause /resume /kill ... listener, or None when Telegram commands are off.

    Commands are obeyed from ``allowed_user_ids`` in ``allowed_chat_ids`` (when that list is
    empty, in the alert chat only), never from anyone else; each one is journaled in
    ``journal``.
    """
    if not (config.enabled and config.commands_enabled):
        return None
    allowed = list(config.allowed_chat_ids)
    if not allowed and config.chat_id is not None:
        allowed = [config.chat_id]
    groups = [chat for chat in allowed if chat < 0]
    if groups and not config.allowed_user_ids:
        log.warning(
            "telegram: group chat(s) %s allowlisted but alerts.telegram.allowed_user_ids is "
            "empty: every command from a group is refused",
            groups,
        )
    return TelegramCommandListener(
        api, allowed, control, allowed_user_ids=config.allowed_user_ids, journal=journal
    )
