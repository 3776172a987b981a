"""Quota exhaustion is its own kind: each provider's documented out-of-credit answers, over real HTTP.

A loopback aiohttp server on 127.0.0.1 answers with the bodies the providers document for an
account that has no credit or quota left, and beside each the plain rate limit it must not be
confused with. Through ``HttpAdapter`` and the provider's codec, the first is ``quota`` with no
retry hint (even when a ``Retry-After`` header or a ``RetryInfo`` detail is sent: no retry soon
helps), the second ``rate_limit`` with its hint. Every body echoes the API key; no error shows it.

Sources: OpenAI's error codes guide (429 ``insufficient_quota``: "You exceeded your current quota,
please check your plan and billing details"); DeepSeek's 402 "Insufficient Balance" for
compatible servers; Anthropic's errors page (402 ``billing_error``; a 400 ``invalid_request_error``
when a spend limit you set is reached) and rate-limits page (the 429 of the tier's monthly spend
cap, ``details.error_code`` ``enforced_spend_limit_reached``, no ``retry-after``); the widely
reported 400 "Your credit balance is too low"; Gemini's 429 ``RESOURCE_EXHAUSTED`` with a
``google.rpc.QuotaFailure`` naming the violated quota.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from aiohttp import web
from loopback import SSE_HEADERS, Handler, adapter, run, serve

from interlock._errors import ErrorClass, MidStreamError, ProviderError
from interlock._secret import Secret
from interlock.adapters.providers._codec import Codec
from interlock.adapters.providers.anthropic._codec import AnthropicCodec
from interlock.adapters.providers.gemini._codec import GeminiCodec
from interlock.adapters.providers.openai._codec import OpenAICodec

KEY = "sk-TESTKEY-quota-0123456789abcdef"
QUOTA, RATE_LIMIT = ErrorClass.QUOTA, ErrorClass.RATE_LIMIT


def refuse(status: int, payload: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Handler:
    """A handler answering ``status`` with ``payload`` as JSON, and ``headers``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.json_response(payload, status=status, headers=headers)

    return handler


def openai_error(message: str, type_: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


OPENAI_QUOTA = "You exceeded your current quota, please check your plan and billing details. Key " + KEY


def anthropic_error(type_: str, message: str, error_code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": type_, "message": message}
    if error_code is not None:
        error["details"] = {"error_code": error_code}
    return {"type": "error", "error": error, "request_id": "req_018EeWyXxfu5pfWkrYcMdjWG"}


def gemini_error(message: str, quota_id: str, quota_value: str, retry: str) -> dict[str, Any]:
    violation = {
        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
        "quotaId": quota_id,
        "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"},
        "quotaValue": quota_value,
    }
    details = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]},
        {"@type": "type.googleapis.com/google.rpc.Help", "links": [{"url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry},
    ]
    return {"error": {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED", "details": details}}


PREPAY = {"code": 429, "message": "Your prepayment credits are depleted. " + KEY, "status": "RESOURCE_EXHAUSTED"}
GEMINI_QUOTA = "You exceeded your current quota, please check your plan and billing details. " + KEY
PER_DAY = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
PER_MINUTE = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
RETRY_7 = {"Retry-After": "7"}

CASES: list[tuple[str, str, int, dict[str, Any], dict[str, str], ErrorClass, float | None]] = [
    # (id, codec, status, body, headers, kind, retry_after)
    ("openai-insufficient-quota", "openai", 429, openai_error(OPENAI_QUOTA, "insufficient_quota", "insufficient_quota"),
     RETRY_7, QUOTA, None),
    ("openai-quota-type-only", "openai", 429, openai_error(OPENAI_QUOTA, "insufficient_quota", None), {}, QUOTA, None),
    ("openai-spend-limit-code", "openai", 429,
     openai_error(OPENAI_QUOTA, "insufficient_quota", "project_spend_limit_exceeded"), {}, QUOTA, None),
    ("openai-rate-limit", "openai", 429,
     openai_error("Rate limit reached for requests " + KEY, "requests", "rate_limit_exceeded"), RETRY_7,
     RATE_LIMIT, 7.0),
    ("compatible-402-balance", "compatible", 402,
     openai_error("Insufficient Balance " + KEY, "unknown_error", None), {}, QUOTA, None),
    ("anthropic-402-billing", "anthropic", 402,
     anthropic_error("billing_error", "There is an issue with your billing " + KEY), RETRY_7, QUOTA, None),
    ("anthropic-400-credit", "anthropic", 400, anthropic_error(
        "invalid_request_error",
        "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing. " + KEY,
    ), {}, QUOTA, None),
    ("anthropic-400-spend-limit", "anthropic", 400, anthropic_error(
        "invalid_request_error",
        "You have reached your specified API usage limits. You will regain access on 2026-09-01 at 00:00 UTC. " + KEY,
    ), {}, QUOTA, None),
    ("anthropic-429-spend-cap", "anthropic", 429, anthropic_error(
        "rate_limit_error",
        "You have reached your API usage limits: your organization has crossed its monthly API usage threshold. " + KEY,
        "enforced_spend_limit_reached",
    ), {}, QUOTA, None),
    ("anthropic-rate-limit", "anthropic", 429,
     anthropic_error("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit " + KEY),
     RETRY_7, RATE_LIMIT, 7.0),
    ("gemini-per-day", "gemini", 429, gemini_error(GEMINI_QUOTA, PER_DAY, "250", "22s"), RETRY_7, QUOTA, None),
    ("gemini-limit-zero", "gemini", 429, gemini_error(GEMINI_QUOTA, PER_MINUTE, "0", "37s"), {}, QUOTA, None),
    ("gemini-prepay-depleted", "gemini", 429, {"error": PREPAY}, {}, QUOTA, None),
    ("gemini-per-minute", "gemini", 429, gemini_error(GEMINI_QUOTA, PER_MINUTE, "5", "46s"), {}, RATE_LIMIT, 46.0),
]


def codec_of(name: str) -> Codec:
    """The codec ``name`` stands for, with the test key."""
    if name in ("openai", "compatible"):
        return OpenAICodec(name, Secret(KEY), compatible=name == "compatible")
    if name == "anthropic":
        return AnthropicCodec(name, Secret(KEY))
    return GeminiCodec(name, Secret(KEY))


def assert_no_key(error: ProviderError) -> None:
    """No text of ``error`` shows the API key."""
    assert all(KEY not in text for text in (str(error), repr(error), error.detail))


@pytest.mark.parametrize(
    ("name", "status", "payload", "headers", "kind", "retry_after"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
@pytest.mark.anyio
async def test_documented_quota_answers_are_quota_and_rate_limits_stay_rate_limits(
    name: str,
    status: int,
    payload: dict[str, Any],
    headers: dict[str, str],
    kind: ErrorClass,
    retry_after: float | None,
) -> None:
    """An out-of-credit answer is quota with no retry hint; the plain rate limit beside it keeps its kind and hint."""
    async with serve(refuse(status, payload, headers)) as url, adapter(url, codec_of(name)) as made:
        for stream in (True, False):
            events, error = await run(made, "m-1", stream=stream)
            assert events == []
            assert type(error) is ProviderError
            assert (error.kind, error.status, error.provider, error.retry_after) == (kind, status, name, retry_after)
            assert_no_key(error)


def in_band(name: str) -> bytes:
    """A stream that starts, then carries the provider's out-of-credit error in band (echoing the key)."""
    if name == "openai":
        head = {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}
        error = openai_error(OPENAI_QUOTA, "insufficient_quota", "insufficient_quota")
        return b"".join(b"data: " + json.dumps(o).encode() + b"\n\n" for o in (head, error))
    if name == "anthropic":
        block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "Hi"}}
        error = anthropic_error("billing_error", "There is an issue with your billing " + KEY)
        return b"".join(
            f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()
            for event, data in (("content_block_start", block), ("error", error))
        )
    head = {"candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"}, "index": 0}]}
    error = gemini_error(GEMINI_QUOTA, PER_DAY, "250", "22s")
    return b"".join(b"data: " + json.dumps(o).encode() + b"\r\n\r\n" for o in (head, error))


@pytest.mark.parametrize("name", ["openai", "anthropic", "gemini"])
@pytest.mark.anyio
async def test_an_in_band_quota_error_is_a_quota_mid_stream_error(name: str) -> None:
    """Out of credit reported inside a started stream is a quota MidStreamError keeping the text so far."""

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)
        await response.write(in_band(name))
        await response.write_eof()
        return response

    async with serve(handler) as url, adapter(url, codec_of(name)) as made:
        _, error = await run(made, "m-1")
    assert isinstance(error, MidStreamError)
    assert (error.kind, error.provider, error.partial, error.retry_after) == (QUOTA, name, "Hi", None)
    assert_no_key(error)
