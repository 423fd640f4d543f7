"""The shared HTTP layer's pieces: Retry-After parsing, redaction, breaker, bucket, poller."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging

import aiohttp
import pytest

from agent.errors import TemporaryError
from agent.feeds.http import (
    CircuitBreaker,
    HttpSource,
    HttpStatusError,
    Poller,
    ReadingBook,
    RedactingLogger,
    Redactor,
    SourceGuard,
    SourcePolicy,
    TokenBucket,
    parse_retry_after,
)
from tests.fakes.http_fakes import FakeServer

SECRET = "query-key-SECRET-42424242"


def test_parse_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = 1_800_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now_epoch=now) == pytest.approx(30.0)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(past, now_epoch=now) == 0.0


def test_redactor_hides_registered_secrets_and_credential_fields() -> None:
    redactor = Redactor([SECRET])
    url = f"https://api.example/v1/x?ids=a,b&api_key={SECRET}&x_cg_demo_api_key=other"
    shown = redactor.redact_url(url)
    assert SECRET not in shown and "other" not in shown and "ids=a,b" in shown
    headers = redactor.redact_headers({"Authorization": "Bearer abc", "Accept": "json"})
    assert headers == {"Authorization": "***", "Accept": "json"}
    assert redactor.redact(f"failed: token={SECRET}") == "failed: token=***"


def test_redacting_logger_formats_then_redacts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    log = RedactingLogger(logging.getLogger("test.thirdparty"), Redactor([SECRET]))
    log.debug("%s %s, Request: %s", "GET", "http://h/p", {"X-MBX-APIKEY": SECRET})
    assert "X-MBX-APIKEY" in caplog.text and SECRET not in caplog.text


def test_breaker_opens_after_threshold_and_half_opens_after_cooldown() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=10.0, clock=lambda: now[0])
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state == "closed"
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 10.0
    assert breaker.state == "half_open"
    assert breaker.allow() and not breaker.allow()  # exactly one trial
    breaker.record_failure()  # the trial failed: open again for a full cool-down
    assert breaker.state == "open" and breaker.times_opened == 2
    now[0] = 20.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow()


async def test_token_bucket_spaces_requests_beyond_burst() -> None:
    bucket = TokenBucket(rate_per_s=50.0, burst=2)
    loop = asyncio.get_running_loop()
    stamps = []
    for _ in range(4):
        await bucket.acquire()
        stamps.append(loop.time())
    # Two from the burst, then one token per 1/50 s: an ordering property, not a speed one.
    assert stamps[3] - stamps[1] >= 2 / 50 - 0.005


async def test_poller_survives_crashes_redacts_and_is_cancelled_by_owner(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    calls = []
    four_done = asyncio.Event()

    async def poll() -> None:
        calls.append(1)
        if len(calls) >= 4:
            four_done.set()
        if len(calls) % 2:
            raise RuntimeError(f"boom with {SECRET}")
        raise TemporaryError("temporary")

    poller = Poller("crashy", poll, interval_s=0.0, redactor=Redactor([SECRET]))
    poller.start()
    await four_done.wait()
    await poller.aclose()

    assert poller.stats.failures >= 4 and poller.stats.cycles >= 4
    assert SECRET not in caplog.text and SECRET not in (poller.stats.last_error or "")
    assert "boom with ***" in caplog.text  # the crash was logged, with its traceback
    assert "Traceback" in caplog.text


async def test_reading_book_keeps_last_good_value() -> None:
    book: ReadingBook[str, int] = ReadingBook("src", max_age_s=10.0)
    assert book.fail("k", "down").value is None
    good = book.ok("k", 5, fetched_at=100.0)
    stale = book.fail("k", "down again")
    assert stale.value == 5 and stale.fetched_at == 100.0 and stale.error == "down again"
    assert stale.is_stale(now=101.0) and not good.is_stale(now=101.0)


async def test_secret_in_query_never_reaches_logs_or_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = FakeServer()
    server.route("/v1/thing", _ok)
    policy = SourcePolicy(max_attempts=2, backoff_initial_s=0.01, backoff_jitter_s=0.0)
    async with server, aiohttp.ClientSession() as session:
        source = HttpSource(session, "thing", f"{server.url}/v1", policy, query={"key": SECRET})
        assert await source.get_json("/thing") == {"ok": True}
        server.fail("500", times=2)
        with pytest.raises(TemporaryError) as raised:
            await source.get_json("/thing", {"q": "x"})
        # A refused connection (server gone) must not leak the URL with its query either.
    async with aiohttp.ClientSession() as session:
        source = HttpSource(session, "gone", server.url, policy, query={"key": SECRET})
        with pytest.raises(TemporaryError) as refused:
            await source.get_json("/thing")
    assert server.requests[0].query["key"] == SECRET  # it was sent...
    assert SECRET not in caplog.text  # ...but never shown
    assert SECRET not in str(raised.value) and SECRET not in str(refused.value)


async def _ok(request: object) -> object:
    return {"ok": True}


async def test_cancelled_half_open_trial_does_not_wedge_the_breaker() -> None:
    now = [0.0]
    policy = SourcePolicy(
        rate_per_s=0.001, burst=1, max_attempts=1, breaker_failures=1, breaker_cooldown_s=5.0
    )
    guard = SourceGuard("wedge", policy, clock=lambda: now[0])

    async def fail() -> None:
        raise TemporaryError("down")

    with pytest.raises(TemporaryError):
        await guard.call(fail)  # opens the breaker, and spends the only token
    now[0] = 5.0  # cool-down over: the next call is the half-open trial...
    trial = asyncio.create_task(guard.call(_never))
    await asyncio.sleep(0.01)  # ...stuck waiting for a token (the bucket's clock is frozen)
    trial.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await trial

    assert guard.breaker.allow()  # a new trial may go out


async def _never() -> None:
    await asyncio.Event().wait()


async def test_credentials_never_follow_a_redirect_to_another_origin(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    policy = SourcePolicy(max_attempts=3, backoff_initial_s=0.01, backoff_jitter_s=0.0)
    provider, elsewhere = FakeServer(name="provider"), FakeServer(name="elsewhere")
    provider.route("/v2/thing", _ok)
    elsewhere.route("/steal", _ok)
    async with provider, elsewhere, aiohttp.ClientSession() as session:
        source = HttpSource(
            session,
            "thing",
            f"{provider.url}/v1",
            policy,
            headers={"Authorization": f"Bearer {SECRET}", "x-cg-pro-api-key": SECRET},
            query={"key": SECRET},
        )
        # Within the provider's origin a redirect is followed, credentials and all.
        provider.fail("redirect", path="/v1/thing", status=301, headers={"Location": "/v2/thing"})
        assert await source.get_json("/thing") == {"ok": True}
        moved = provider.requests_to("/v2/thing")[0]
        assert moved.headers["x-cg-pro-api-key"] == SECRET and moved.query["key"] == SECRET

        # To another origin (another port of the same host counts): refused, not retried.
        for status in (302, 307):
            provider.fail(
                "redirect",
                path="/v1/thing",
                status=status,
                headers={"Location": f"{elsewhere.url}/steal?from=provider"},
            )
            with pytest.raises(HttpStatusError, match="redirect to another origin") as refused:
                await source.get_json("/thing")
            assert SECRET not in str(refused.value)
    assert elsewhere.requests == []  # no header, no query key, nothing reached it
    assert len(provider.requests_to("/v1/thing")) == 3  # one request per call, no retries
    assert SECRET not in caplog.text
