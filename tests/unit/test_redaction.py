"""The one redactor: what feeds and alert channels put in logs and errors carries no secret."""

from __future__ import annotations

from urllib.parse import quote

from agent.redaction import Redactor, redact_endpoint

TOKEN = "123456:AAE-secret/bot+token"


def test_a_secret_is_masked_as_given_and_as_an_http_client_quotes_it() -> None:
    redact = Redactor([TOKEN], mask="<redacted>")
    text = f"Cannot connect to https://api.example/bot{quote(TOKEN, safe='')}/sendMessage ({TOKEN})"
    shown = redact(text)
    assert TOKEN not in shown and quote(TOKEN, safe="") not in shown
    assert shown.count("<redacted>") == 2


def test_credential_named_query_values_are_masked_without_being_registered() -> None:
    shown = Redactor().redact("GET https://pro-api.example/v3/price?ids=eth&x_cg_pro_api_key=K9")
    assert "K9" not in shown and "ids=eth" in shown


def test_an_rpc_url_becomes_a_host_label() -> None:
    assert redact_endpoint("https://user:pw@eth.example:8545/v3/KEY?x=1") == "eth.example:8545"
