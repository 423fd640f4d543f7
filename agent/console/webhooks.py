"""Signal webhooks: ``POST /webhooks/<name>`` turns a signed alert into a queued trading signal.

How a request proves itself (an ``X-Signature`` HMAC header, or a TradingView passphrase in the
body), the timestamp window, the nonces and the rate limit are ``agent.console.webhook_auth``'s.
This router runs them in order (size, rate, signature, freshness, allowed action and token),
journals every authenticated request and every bad signature as a control action of source
``webhook`` (never a secret), and hands an accepted signal to ``ConsoleContext.signals`` (the
signal strategy's queue, wired by the app layer). It answers 202 once the signal is queued:
the strategy trades it at the next block, through the risk gate.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request

from agent.console.context import ConsoleContext, console_context
from agent.console.webhook_auth import (
    JOURNAL_SOURCE,
    MAX_BODY_BYTES,
    SIGNATURE_HEADER,
)
from agent.errors import WebhookRefused

log = logging.getLogger(__name__)

Context = Annotated[ConsoleContext, Depends(console_context)]
_JOURNAL_ACTION = "signal"

# -- the router -------------------------------------------------------------------------------

webhooks = APIRouter(prefix="/webhooks", tags=["webhooks"])


async def _journal(
    context: ConsoleContext,
    request: Request,
    name: str,
    *,
    accepted: bool,
    argument: Mapping[str, Any] | None,
    detail: str,
) -> None:
    actor = f"{name}@{request.client.host if request.client is not None else 'unknown'}"
    try:
        await context.parts.journal.record_control_action(
            source=JOURNAL_SOURCE,
            actor=actor,
            action=_JOURNAL_ACTION,
            accepted=accepted,
            argument="" if argument is None else json.dumps(argument, separators=(",", ":")),
            detail=detail,
        )
    except Exception as exc:
        log.error("cannot journal webhook %s: %s", name, type(exc).__name__)


@webhooks.post(
    "/{name}",
    status_code=202,
    summary="A signed trading signal for the signal strategy (see the README: Signal webhooks)",
)
async def receive_signal(name: str, request: Request, context: Context) -> dict[str, Any]:
    receiver = context.webhooks
    if receiver is None or name not in receiver.webhooks:
        raise HTTPException(status_code=404, detail="no such webhook")
    if not receiver.within_rate(name):
        log.warning("webhook %s: over its rate limit, request refused", name)
        raise HTTPException(
            status_code=429, detail="rate limit exceeded", headers={"Retry-After": "60"}
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(status_code=413, detail=f"body over {MAX_BODY_BYTES} bytes")
    # Read at most MAX_BODY_BYTES, whatever the sender declared (or did not: chunked).
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise HTTPException(status_code=413, detail=f"body over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    await receiver.load_nonces(context.parts.journal)
    try:
        signal = receiver.authenticate(name, request.headers.get(SIGNATURE_HEADER), body)
    except WebhookRefused as refused:
        log.warning("webhook %s: %s", name, refused.reason)
        await _journal(context, request, name, accepted=False, argument=None, detail=refused.reason)
        raise HTTPException(status_code=refused.status, detail=refused.reason) from None
    message = signal.message
    argument: dict[str, Any] = {"webhook": name}
    if message is not None:
        argument.update(
            nonce=message.nonce,
            action=message.action,
            token=message.token,
            amount=message.amount,
            amount_usd=message.amount_usd,
        )
    try:
        receiver.check_fresh(signal)
        if message is None:
            raise WebhookRefused(422, signal.problem)
        receiver.check_allowed(name, message)
        if context.signals is None:
            raise WebhookRefused(503, "the signal strategy is not running")
        if not context.signals(receiver.to_signal(name, message)):
            raise WebhookRefused(503, "the signal queue is full")
    except WebhookRefused as refused:
        log.warning("webhook %s: %s", name, refused.reason)
        await _journal(
            context,
            request,
            name,
            accepted=False,
            argument=argument if "nonce" in argument else None,
            detail=refused.reason,
        )
        raise HTTPException(status_code=refused.status, detail=refused.reason) from None
    log.info("webhook %s: %s %s queued", name, message.action, message.token)
    await _journal(context, request, name, accepted=True, argument=argument, detail="queued")
    return {
        "queued": True,
        "nonce": message.nonce,
        "action": message.action,
        "token": message.token,
    }
