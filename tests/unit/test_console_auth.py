"""The console's gatekeeping: the token (configured, or generated 0600 and reused), the IP
allowlist required off loopback, and event-stream tickets that expire and cannot be forged."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from agent.config.models import AgentConfig
from agent.console.auth import TICKET_TTL_S, ConsoleAuth, IpAllowlist, load_or_create_token
from agent.errors import ConfigError

CHAIN = {"rpc_urls": ["http://127.0.0.1:8545"]}


def test_a_token_is_generated_once_owner_only_and_reused(tmp_path: Path) -> None:
    token_file = tmp_path / "data" / "console.token"
    first = load_or_create_token(None, token_file)
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert len(first.get_secret_value()) >= 32
    assert load_or_create_token(None, token_file).get_secret_value() == first.get_secret_value()
    configured = SecretStr("from-the-env-file-0123")
    assert load_or_create_token(configured, token_file) is configured


def test_a_token_file_others_can_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    token_file = tmp_path / "console.token"
    token_file.write_text("a-perfectly-fine-token-value\n")
    token_file.chmod(0o644)
    with pytest.raises(ConfigError) as refused:
        load_or_create_token(None, token_file)
    assert f"chmod 600 {token_file}" in str(refused.value)
    assert "perfectly" not in str(refused.value)


def test_the_token_file_is_relative_to_the_config_and_a_public_bind_needs_an_allowlist(
    tmp_path: Path,
) -> None:
    cfg = AgentConfig.from_mapping(
        {"chain": CHAIN, "console": {"enabled": True}}, environ={}, base_dir=tmp_path
    )
    assert cfg.console.host == "127.0.0.1"
    assert cfg.console.token_file == tmp_path / "data" / "console.token"
    with pytest.raises(ConfigError, match=r"console\.allowed_ips: required when host"):
        AgentConfig.from_mapping(
            {"chain": CHAIN, "console": {"host": "0.0.0.0"}}, environ={}, base_dir=tmp_path
        )
    public = AgentConfig.from_mapping(
        {"chain": CHAIN, "console": {"host": "0.0.0.0", "allowed_ips": ["10.0.0.0/24"]}},
        environ={},
        base_dir=tmp_path,
    )
    assert public.console.allowed_ips == ["10.0.0.0/24"]
    with pytest.raises(ConfigError, match=r"console\.allowed_ips"):
        AgentConfig.from_mapping(
            {"chain": CHAIN, "console": {"allowed_ips": ["not-an-ip"]}}, environ={}
        )


def test_the_token_from_the_env_file_is_a_secret(tmp_path: Path) -> None:
    cfg = AgentConfig.from_mapping(
        {"chain": CHAIN, "console": {"token": "${DEFI_AGENT_CONSOLE_TOKEN}"}},
        environ={"DEFI_AGENT_CONSOLE_TOKEN": "operator-console-token-42"},
    )
    assert cfg.console.token is not None
    assert cfg.console.token.get_secret_value() == "operator-console-token-42"
    assert "operator-console-token-42" not in cfg.redacted_dump()


def test_loopback_is_always_allowed_others_only_when_listed() -> None:
    allowlist = IpAllowlist(["10.0.0.0/24", "2001:db8::1"])
    assert allowlist.allows("127.0.0.1") and allowlist.allows("::1")
    assert allowlist.allows("10.0.0.77") and allowlist.allows("2001:db8::1")
    assert not allowlist.allows("10.0.1.1")
    assert not allowlist.allows("192.168.1.5")
    assert not allowlist.allows(None) and not allowlist.allows("garbage")
    assert not IpAllowlist([]).allows("10.0.0.77")


def test_bearer_tokens_and_stream_tickets() -> None:
    now = [1_000_000.0]
    auth = ConsoleAuth(SecretStr("the-console-token-0123"), clock=lambda: now[0])
    assert auth.bearer_ok("Bearer the-console-token-0123")
    assert auth.bearer_ok("bearer the-console-token-0123")
    for wrong in (None, "", "Bearer", "Basic the-console-token-0123", "Bearer the-console"):
        assert not auth.bearer_ok(wrong)
    assert "the-console-token" not in repr(auth)

    ticket, expires = auth.issue_ticket()
    assert expires == now[0] + TICKET_TTL_S
    assert auth.ticket_ok(ticket)
    other = ConsoleAuth(SecretStr("another-console-token-99"), clock=lambda: now[0])
    assert not other.ticket_ok(ticket)  # signed with a different token
    payload, _, mac = ticket.partition(".")
    assert not auth.ticket_ok(payload + "." + "0" * len(mac))
    assert not auth.ticket_ok("not a ticket")
    now[0] += TICKET_TTL_S + 1
    assert not auth.ticket_ok(ticket)  # expired


async def test_the_console_refuses_addresses_off_its_allowlist_before_any_route() -> None:
    from agent.console.app import GuardMiddleware

    reached: list[str] = []

    async def routes(scope: dict[str, Any], receive: Any, send: Any) -> None:
        reached.append(scope["client"][0])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    guard = GuardMiddleware(routes, IpAllowlist(["10.0.0.0/24"]))

    async def call(client: str) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        scope = {"type": "http", "client": (client, 40000), "path": "/api/status"}
        await guard(scope, receive, send)
        return sent

    refused = await call("192.168.1.9")
    assert refused[0]["status"] == 403 and reached == []
    for client in ("127.0.0.1", "10.0.0.9"):
        allowed = await call(client)
        assert allowed[0]["status"] == 200
        headers = dict(allowed[0]["headers"])
        assert headers[b"x-frame-options"] == b"DENY"  # the control buttons cannot be framed
    assert reached == ["127.0.0.1", "10.0.0.9"]
