"""The batch clients against a loopback server written here from the providers' documented wire formats.

The server is not the simulator: it is a small aiohttp app that answers what OpenAI's Batch API
and Anthropic's Message Batches are documented to answer (batch objects, request counts, output
and error files, results JSONL with the four result types), and records what each client sent.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from interlock._errors import ErrorClass, ProviderError
from interlock._secret import Secret
from interlock._types import ChatRequest, Message, TextDelta, UsageEvent
from interlock.adapters.providers._http_client import HttpTimeouts
from interlock.adapters.providers.anthropic._batch import AnthropicBatchClient
from interlock.adapters.providers.anthropic._codec import AnthropicCodec
from interlock.adapters.providers.openai._batch import OpenAIBatchClient
from interlock.adapters.providers.openai._codec import OpenAICodec
from interlock.adapters.simulator._server import dead_url

pytestmark = pytest.mark.anyio

KEY = "sk-test-wire-0123456789"
TIMEOUTS = HttpTimeouts(connect_s=2, first_byte_s=5, read_s=5)


def _ask(text: str) -> ChatRequest:
    return ChatRequest(messages=(Message.text("user", text),), max_tokens=64)


def _completion(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x-2025",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
    }  # fmt: skip


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Run ``app`` on an ephemeral loopback port; yields its URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


class OpenAIServer:
    """OpenAI's Batch API as documented: files, batches, output and error files."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {"auth": set()}
        self.polls = 0
        self.status = "completed"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/files", self.upload)
        app.router.add_post("/v1/batches", self.create)
        app.router.add_get("/v1/batches/{id}", self.retrieve)
        app.router.add_post("/v1/batches/{id}/cancel", self.cancel)
        app.router.add_get("/v1/files/{id}/content", self.content)
        return app

    def _auth(self, request: web.Request) -> None:
        self.seen["auth"].add(request.headers.get("Authorization", ""))

    async def upload(self, request: web.Request) -> web.Response:
        self._auth(request)
        form = await request.post()
        upload = form["file"]
        assert isinstance(upload, web.FileField)
        self.seen["purpose"] = form["purpose"]
        self.seen["lines"] = [json.loads(line) for line in upload.file.read().splitlines()]
        return web.json_response({"id": "file-in", "object": "file", "bytes": 10, "created_at": 1,
                                  "filename": upload.filename, "purpose": "batch", "status": "processed"})  # fmt: skip

    async def create(self, request: web.Request) -> web.Response:
        self._auth(request)
        self.seen["create"] = await request.json()
        return web.json_response(self._batch("validating"))

    async def retrieve(self, request: web.Request) -> web.Response:
        self._auth(request)
        self.polls += 1
        return web.json_response(self._batch("in_progress" if self.polls == 1 else self.status))

    async def cancel(self, request: web.Request) -> web.Response:
        self._auth(request)
        return web.json_response(self._batch("cancelling"))

    def _batch(self, status: str) -> dict[str, Any]:
        done = status in ("completed", "expired", "failed")
        body: dict[str, Any] = {
            "id": "batch_abc", "object": "batch", "endpoint": "/v1/chat/completions", "input_file_id": "file-in",
            "completion_window": "24h", "status": status, "created_at": 1,
            "request_counts": {"total": 4, "completed": 1 if done else 0, "failed": 2 if done else 0},
            "output_file_id": "file-out" if done and status != "failed" else None,
            "error_file_id": "file-err" if done and status != "failed" else None,
        }  # fmt: skip
        if status == "failed":
            body["errors"] = {"object": "list", "data": [{"code": "invalid_json", "message": "bad line", "line": 2}]}
        return body

    async def content(self, request: web.Request) -> web.Response:
        self._auth(request)
        ids = [line["custom_id"] for line in self.seen["lines"]]
        if request.match_info["id"] == "file-out":
            response = {"status_code": 200, "request_id": "r1", "body": _completion("hello back")}
            lines = [{"id": "br1", "custom_id": ids[0], "error": None, "response": response}]
        else:
            too_long = {"error": {"message": f"too long for key {KEY}", "type": "invalid_request_error",
                                  "param": "messages", "code": "context_length_exceeded"}}  # fmt: skip
            lines = [
                {"id": "br2", "custom_id": ids[1], "error": None,
                 "response": {"status_code": 400, "request_id": "r2", "body": too_long}},
                {"id": "br3", "custom_id": ids[2], "response": None,
                 "error": {"code": "batch_expired", "message": "not executed before the window expired"}},
            ]  # fmt: skip
        return web.Response(body="".join(json.dumps(line) + "\n" for line in lines), content_type="application/jsonl")


def _openai(url: str) -> OpenAIBatchClient:
    return OpenAIBatchClient("oai", url + "/v1", OpenAICodec("oai", Secret(KEY, source="$K")), TIMEOUTS)


async def test_openai_client_speaks_the_batch_wire_and_reads_each_item() -> None:
    """Upload, create, poll, download: an answer, a classified 400, an expired item and a missing one."""
    server = OpenAIServer()
    async with serve(server.app()) as url:
        client = _openai(url)
        try:
            sent = await client.submit([(f"item-{n}", _ask(f"question {n}")) for n in range(4)], "gpt-x")
            assert sent.batch_id == "batch_abc"
            running = await client.status("batch_abc")
            assert (running.phase, running.status, running.counts.processing) == ("in_progress", "in_progress", 4)
            done = await client.status("batch_abc")
            assert done.ended
            results = await client.results("batch_abc", "gpt-x", [f"item-{n}" for n in range(4)])
        finally:
            await client.aclose()
    assert server.seen["purpose"] == "batch"
    assert server.seen["create"] == {"input_file_id": "file-in", "endpoint": "/v1/chat/completions",
                                     "completion_window": "24h"}  # fmt: skip
    lines = server.seen["lines"]
    assert [(line["custom_id"], line["method"], line["url"]) for line in lines] == [
        (f"item-{n}", "POST", "/v1/chat/completions") for n in range(4)
    ]
    assert all(line["body"]["model"] == "gpt-x" and "stream" not in line["body"] for line in lines)
    assert server.seen["auth"] == {f"Bearer {KEY}"}
    answer = results["item-0"]
    assert answer.error is None
    assert [e.text for e in answer.events if isinstance(e, TextDelta)] == ["hello back"]
    assert [e.usage.input_tokens for e in answer.events if isinstance(e, UsageEvent)] == [12]
    too_long = results["item-1"].error
    assert too_long is not None
    assert (too_long.kind, too_long.status) == (ErrorClass.CONTEXT_LENGTH, 400)
    assert KEY not in str(too_long)
    expired = results["item-2"].error
    assert expired is not None
    assert expired.kind is ErrorClass.TIMEOUT
    assert "batch_expired" in str(expired)
    missing = results["item-3"].error
    assert missing is not None
    assert missing.kind is ErrorClass.SERVER_ERROR


async def test_openai_failed_batch_fails_every_item_with_its_reason() -> None:
    """A batch whose input did not validate ends ``failed``; each item is a bad request naming the line."""
    server = OpenAIServer()
    server.status = "failed"
    server.polls = 1
    async with serve(server.app()) as url:
        client = _openai(url)
        try:
            await client.submit([("a", _ask("x"))], "gpt-x")
            status = await client.status("batch_abc")
            results = await client.results("batch_abc", "gpt-x", ["a"])
            cancelling = await client.cancel("batch_abc")
        finally:
            await client.aclose()
    assert status.failure == "invalid_json: bad line (line 2)"
    error = results["a"].error
    assert error is not None
    assert error.kind is ErrorClass.BAD_REQUEST
    assert "bad line" in str(error)
    assert cancelling.phase == "cancelling"


class AnthropicServer:
    """Anthropic's Message Batches as documented; ``results_host`` puts results_url elsewhere."""

    def __init__(self, results_host: str | None = None) -> None:
        self.results_host = results_host
        self.seen: dict[str, Any] = {"keys": set(), "versions": set()}
        self.polls = 0
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages/batches", self.create)
        app.router.add_get("/v1/messages/batches/{id}", self.retrieve)
        app.router.add_post("/v1/messages/batches/{id}/cancel", self.cancel)
        app.router.add_get("/v1/messages/batches/{id}/results", self.results)
        return app

    def _auth(self, request: web.Request) -> None:
        self.seen["keys"].add(request.headers.get("x-api-key", ""))
        self.seen["versions"].add(request.headers.get("anthropic-version", ""))

    def _batch(self, status: str) -> dict[str, Any]:
        ended = status == "ended"
        counts = {"processing": 0 if ended else 4, "succeeded": 1 if ended else 0, "errored": 1 if ended else 0,
                  "canceled": 1 if ended else 0, "expired": 1 if ended else 0}  # fmt: skip
        origin = self.results_host or self.url
        return {
            "id": "msgbatch_1", "type": "message_batch", "processing_status": status, "request_counts": counts,
            "created_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-02T00:00:00Z",
            "ended_at": "2026-01-01T01:00:00Z" if ended else None, "cancel_initiated_at": None, "archived_at": None,
            "results_url": f"{origin}/v1/messages/batches/msgbatch_1/results" if ended else None,
        }  # fmt: skip

    async def create(self, request: web.Request) -> web.Response:
        self._auth(request)
        self.seen["create"] = await request.json()
        return web.json_response(self._batch("in_progress"))

    async def retrieve(self, request: web.Request) -> web.Response:
        self._auth(request)
        self.polls += 1
        return web.json_response(self._batch("in_progress" if self.polls == 1 else "ended"))

    async def cancel(self, request: web.Request) -> web.Response:
        self._auth(request)
        return web.json_response(self._batch("canceling"))

    async def results(self, request: web.Request) -> web.Response:
        self._auth(request)
        ids = [r["custom_id"] for r in self.seen.get("create", {"requests": []})["requests"]]
        message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x-2025",
                   "content": [{"type": "text", "text": "batched hi"}], "stop_reason": "end_turn",
                   "stop_sequence": None, "usage": {"input_tokens": 9, "output_tokens": 3}}  # fmt: skip
        overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        lines = [
            {"custom_id": ids[3], "result": {"type": "expired"}},
            {"custom_id": ids[1], "result": {"type": "errored", "error": overloaded}},
            {"custom_id": ids[0], "result": {"type": "succeeded", "message": message}},
            {"custom_id": ids[2], "result": {"type": "canceled"}},
        ]
        return web.Response(body="".join(json.dumps(line) + "\n" for line in lines), content_type="application/binary")


def _anthropic(url: str) -> AnthropicBatchClient:
    return AnthropicBatchClient("ant", url, AnthropicCodec("ant", Secret(KEY, source="$K")), TIMEOUTS)


async def test_anthropic_client_reads_the_four_result_types_in_any_order() -> None:
    """Succeeded, errored (classified by its error type), canceled and expired, matched by custom_id."""
    server = AnthropicServer()
    ids = [f"req_{n}" for n in range(4)]
    async with serve(server.app()) as url:
        server.url = url
        client = _anthropic(url)
        try:
            sent = await client.submit([(i, _ask(i)) for i in ids], "claude-x")
            first = await client.status(sent.batch_id)
            ended = await client.status(sent.batch_id)
            results = await client.results(sent.batch_id, "claude-x", ids)
            cancelling = await client.cancel(sent.batch_id)
        finally:
            await client.aclose()
    requests = server.seen["create"]["requests"]
    assert [r["custom_id"] for r in requests] == ids
    assert all(r["params"]["model"] == "claude-x" and r["params"]["max_tokens"] == 64 for r in requests)
    assert server.seen["keys"] == {KEY}
    assert server.seen["versions"] == {"2023-06-01"}
    assert (first.phase, first.counts.processing) == ("in_progress", 4)
    assert (ended.phase, ended.counts.total, ended.counts.expired) == ("ended", 4, 1)
    assert cancelling.phase == "cancelling"
    ok = results["req_0"]
    assert ok.error is None
    assert [e.text for e in ok.events if isinstance(e, TextDelta)] == ["batched hi"]
    kinds = {cid: r.error.kind for cid, r in results.items() if r.error is not None}
    assert kinds == {"req_1": ErrorClass.OVERLOADED, "req_2": ErrorClass.CANCELLED, "req_3": ErrorClass.TIMEOUT}


async def test_anthropic_results_on_another_host_are_not_fetched_with_the_key() -> None:
    """A results_url off the provider's host is refused before any request carries the key there."""
    elsewhere = AnthropicServer()
    async with serve(elsewhere.app()) as other_url:
        server = AnthropicServer(results_host=other_url)
        async with serve(server.app()) as url:
            server.url = url
            client = _anthropic(url)
            try:
                await client.submit([("req_0", _ask("x"))], "claude-x")
                server.polls = 1
                with pytest.raises(ProviderError, match="another host"):
                    await client.results("msgbatch_1", "claude-x", ["req_0"])
            finally:
                await client.aclose()
    assert elsewhere.seen["keys"] == set()


async def test_a_provider_that_is_not_there_is_a_connect_error_without_the_key() -> None:
    """Nothing listening: the submission fails as ``connect``, and the error does not hold the key."""
    client = _openai(dead_url())
    try:
        with pytest.raises(ProviderError) as caught:
            await client.submit([("a", _ask("x"))], "gpt-x")
    finally:
        await client.aclose()
    assert caught.value.kind is ErrorClass.CONNECT
    assert KEY not in str(caught.value)
