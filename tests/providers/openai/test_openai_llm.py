"""The ``openai`` LLM provider (official SDK) against a loopback server speaking the chat-completions
stream (``tests/helpers/llm_openai_stub.py``), and against a real llama.cpp server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from parley.providers.errors import ProviderRejected, ProviderUnavailable
from parley.providers.llm.base import ChatMessage, LLMChunk, ToolCall, ToolSpec
from parley.providers.llm.openai_compat import OpenAICompatibleModel
from tests.helpers.llm_assets import free_port, gemma_gguf, llama_server
from tests.helpers.llm_openai_stub import TOOL_CALL_STREAM, StubResponse, StubServer, sse, text_stream
from tests.helpers.llm_streams import cancel_after

WEATHER = ToolSpec(
    "get_weather",
    "Look up the weather",
    {"type": "object", "properties": {"city": {"type": "string"}, "units": {"type": "string"}}},
)
ASK = [ChatMessage("system", "Be brief."), ChatMessage("user", "Weather in Paris, and the time in CET?")]


async def collect(model: OpenAICompatibleModel, messages: list[ChatMessage], **kw: object) -> list[LLMChunk]:
    return [chunk async for chunk in model.stream(messages, **kw)]  # type: ignore[arg-type]


async def test_openai_fragmented_tool_call_deltas_assemble_into_exact_tool_calls() -> None:
    async with StubServer([StubResponse(chunks=TOOL_CALL_STREAM)]) as server:
        model = OpenAICompatibleModel(server.url, "stub-model", api_key="sk-test")
        chunks = await collect(model, ASK, tools=[WEATHER], max_tokens=64)
        await model.aclose()
    calls = [c.tool_call for c in chunks if c.tool_call]
    assert calls == [
        ToolCall(
            "call_w1",
            "get_weather",
            {"city": "Paris", "units": "celsius"},
            '{"city": "Paris", "units": "celsius"}',
        ),
        ToolCall("call_t2", "get_time", {"zone": "CET"}, '{"zone": "CET"}'),
    ]
    assert not any(c.text for c in chunks)
    usage = chunks[-1].usage
    assert usage is not None and (usage.input_tokens, usage.output_tokens) == (57, 31)
    assert chunks[-1].finish_reason == "tool_calls"
    sent = server.requests[0]
    assert server.paths == ["/v1/chat/completions"]
    assert server.headers[0]["authorization"] == "Bearer sk-test"
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["model"] == "stub-model" and sent["max_tokens"] == 64
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Look up the weather",
                "parameters": WEATHER.parameters,
            },
        }
    ]


async def test_a_required_tool_goes_out_as_openais_named_tool_choice() -> None:
    # OpenAI chat completions: tool_choice {"type": "function", "function": {"name": …}} forces that call.
    async with StubServer([StubResponse(chunks=TOOL_CALL_STREAM)] * 2) as server:
        model = OpenAICompatibleModel(server.url, "stub-model")
        await collect(model, ASK, tools=[WEATHER], tool_choice="get_weather")
        await collect(model, ASK, tools=[WEATHER])
        await model.aclose()
    forced, free = server.requests
    assert forced["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert "tool_choice" not in free, "without one the model chooses (the API's default)"


async def test_openai_tool_round_trip_messages_go_out_in_openai_format() -> None:
    call = ToolCall("call_w1", "get_weather", {"city": "Paris"}, '{"city":"Paris"}')
    history = [
        *ASK,
        ChatMessage("assistant", tool_calls=(call,)),
        ChatMessage("tool", '{"sky":"sunny"}', tool_call_id="call_w1", name="get_weather"),
    ]
    async with StubServer([StubResponse(chunks=text_stream(["It's ", "sunny."]))]) as server:
        chunks = await collect(OpenAICompatibleModel(server.url, "m"), history, tools=[WEATHER])
    assert [c.text for c in chunks if c.text] == ["It's ", "sunny."]
    assert chunks[-1].usage is not None and chunks[-1].usage.input_tokens == 12
    assert "authorization" not in server.headers[0], "a keyless server gets no bearer token"
    wire = server.requests[0]["messages"]
    assert wire[2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_w1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ],
    }
    assert wire[3] == {
        "role": "tool",
        "content": '{"sky":"sunny"}',
        "tool_call_id": "call_w1",
        "name": "get_weather",
    }


async def test_openai_usage_is_estimated_when_the_server_sends_none() -> None:
    async with StubServer(
        [StubResponse(chunks=text_stream(["Hello ", "there, ", "friend."], usage=False))]
    ) as s:
        chunks = await collect(
            OpenAICompatibleModel(s.url, "m"), [ChatMessage("user", "Say hello to me, please")]
        )
    usage = chunks[-1].usage
    assert usage is not None and usage.input_tokens == 6 and usage.output_tokens == 5


async def test_openai_server_errors_are_retried_before_the_first_byte() -> None:
    failing = StubResponse(status=503, chunks=[b'{"error": "overloaded"}'], content_type="application/json")
    async with StubServer([failing, failing, StubResponse(chunks=text_stream(["ok"]))]) as server:
        chunks = await collect(OpenAICompatibleModel(server.url, "m", max_attempts=3), ASK)
    assert "".join(c.text for c in chunks) == "ok"
    assert len(server.requests) == 3


async def test_openai_http_error_is_unavailable_with_status_and_body_excerpt() -> None:
    failing = StubResponse(
        status=500, chunks=[b'{"error": "model exploded"}' + b" " * 2000], content_type="x"
    )
    async with StubServer([failing]) as server:
        with pytest.raises(ProviderUnavailable) as caught:
            await collect(OpenAICompatibleModel(server.url, "m", max_attempts=2), ASK)
    assert caught.value.status == 500 and "model exploded" in str(caught.value)
    assert caught.value.provider == "openai"
    assert len(str(caught.value)) <= 600 and "HTTP 500" in str(caught.value)
    assert len(server.requests) == 2


async def test_openai_auth_failure_is_unavailable_and_not_retried() -> None:
    denied = StubResponse(
        status=401,
        chunks=[b'{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}'],
        content_type="application/json",
    )
    async with StubServer([denied]) as server:
        with pytest.raises(ProviderUnavailable, match="Incorrect API key") as caught:
            await collect(OpenAICompatibleModel(server.url, "m", api_key="sk-wrong"), ASK)
    assert caught.value.status == 401 and len(server.requests) == 1


async def test_openai_bad_requests_are_rejected_not_retried() -> None:
    bad = StubResponse(status=400, chunks=[b'{"error": "context too long"}'], content_type="application/json")
    async with StubServer([bad]) as server:
        with pytest.raises(ProviderRejected, match="context too long") as caught:
            await collect(OpenAICompatibleModel(server.url, "m"), ASK)
    assert caught.value.status == 400 and len(server.requests) == 1


async def test_openai_a_reply_that_is_not_a_stream_is_an_error_not_silence() -> None:
    plain = StubResponse(
        chunks=[b'{"choices": [{"message": {"content": "Hi"}}]}'], content_type="application/json"
    )
    async with StubServer([plain]) as server:
        with pytest.raises(ProviderUnavailable, match="event-stream") as caught:
            await collect(OpenAICompatibleModel(server.url, "m"), ASK)
    assert caught.value.status == 200 and "Hi" in str(caught.value) and len(server.requests) == 1


async def test_openai_malformed_chunk_raises_after_the_text_before_it() -> None:
    broken = sse({"choices": [{"index": 0, "delta": {"content": "Hel"}}]}, '{"choices": [{"delta": oops')
    async with StubServer([StubResponse(chunks=broken)]) as server:
        model = OpenAICompatibleModel(server.url, "m")
        seen: list[str] = []
        with pytest.raises(ProviderUnavailable, match="malformed") as caught:
            async for chunk in model.stream(ASK):
                seen.append(chunk.text)
    assert seen == ["Hel"] and "oops" in str(caught.value) and len(server.requests) == 1


async def test_openai_an_error_object_mid_stream_is_typed() -> None:
    failing = sse(
        {"choices": [{"index": 0, "delta": {"content": "Let me "}}]},
        {"error": {"message": "The server had an error while processing your request."}},
    )
    async with StubServer([StubResponse(chunks=failing)]) as server:
        seen: list[str] = []
        with pytest.raises(ProviderUnavailable, match="error while processing"):
            async for chunk in OpenAICompatibleModel(server.url, "m").stream(ASK):
                seen.append(chunk.text)
    assert seen == ["Let me "]


async def test_openai_connection_refused_is_unavailable_quickly() -> None:
    model = OpenAICompatibleModel(f"http://127.0.0.1:{free_port()}/v1", "m", max_attempts=2)
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable, match="cannot reach") as caught:
        await collect(model, ASK)
    assert caught.value.status is None and time.monotonic() - started < 5


async def test_openai_no_first_token_by_the_deadline_is_unavailable() -> None:
    """A server that takes the request and says nothing: the caller must not wait on it."""
    silent = StubResponse(chunks=text_stream(["late"]), delay=5.0)
    async with StubServer([silent]) as server:
        model = OpenAICompatibleModel(server.url, "m", first_token_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(ProviderUnavailable, match=r"no first token .* within 300 ms"):
            await collect(model, ASK)
        waited = time.monotonic() - started
        await asyncio.wait_for(server.disconnected.wait(), timeout=2.0)
    assert 0.3 <= waited < 1.5, "fails at the deadline, not at the read timeout"
    assert server.chunks_sent == 0


async def test_openai_retries_stop_at_the_first_token_deadline() -> None:
    failing = StubResponse(status=503, chunks=[b'{"error": "overloaded"}'], content_type="application/json")
    async with StubServer([failing]) as server:
        model = OpenAICompatibleModel(server.url, "m", max_attempts=50, first_token_timeout=0.5)
        started = time.monotonic()
        with pytest.raises(ProviderUnavailable, match="no first token"):
            await collect(model, ASK)
    assert time.monotonic() - started < 1.5 and 2 <= len(server.requests) < 50


async def test_openai_a_stalled_stream_times_out() -> None:
    stall = StubResponse(chunks=[*text_stream(["Hi"])[:1], b""], delay=2.0)
    async with StubServer([stall]) as server:
        model = OpenAICompatibleModel(server.url, "m", timeout=0.3)
        with pytest.raises(ProviderUnavailable, match="timed out"):
            await collect(model, ASK)


async def test_openai_a_reply_that_goes_quiet_mid_way_fails_at_the_stall_deadline() -> None:
    """The caller has heard the first words; the read timeout (30 s by default) is far too long a wait."""
    stalling = StubResponse(chunks=text_stream(["Let me ", "see ", "now."]), delay=1.0)
    async with StubServer([stalling]) as server:
        model = OpenAICompatibleModel(server.url, "m", timeout=30.0, stall_timeout=0.4)
        seen: list[str] = []
        started = time.monotonic()
        with pytest.raises(ProviderUnavailable, match=r"stopped mid-reply: nothing for 400 ms"):
            async for chunk in model.stream(ASK):
                seen.append(chunk.text)
        waited = time.monotonic() - started
    assert seen == ["Let me "], "what came before the stall was handed on"
    assert waited < 3.0, "fails at the stall deadline, not the read timeout"


async def test_openai_a_steady_slow_reply_is_not_a_stall() -> None:
    steady = StubResponse(chunks=text_stream(["One ", "two ", "three."]), delay=0.1)
    async with StubServer([steady]) as server:
        model = OpenAICompatibleModel(server.url, "m", stall_timeout=2.0)
        assert "".join(c.text for c in await collect(model, ASK)) == "One two three."


async def test_openai_cancelling_the_consumer_closes_the_http_stream() -> None:
    slow = StubResponse(chunks=text_stream([f"w{i} " for i in range(40)]), delay=0.05)
    async with StubServer([slow]) as server:
        model = OpenAICompatibleModel(server.url, "m")
        await cancel_after(model.stream(ASK), 2)
        await asyncio.wait_for(server.disconnected.wait(), timeout=1.0)
        assert server.chunks_sent < 10


async def test_a_warm_up_answered_with_a_page_the_sdk_cannot_read_is_only_logged() -> None:
    """A proxy's HTML page on /v1/models made every session of the agent fail with "not ready"."""
    page = StubResponse(chunks=[b"<html>maintenance</html>"], content_type="text/html")
    async with StubServer([page, StubResponse(chunks=text_stream(["Hi."]))]) as server:
        model = OpenAICompatibleModel(server.url, "m")
        with capture_logs() as logs:
            await model.warm_up()
        assert [entry["event"] for entry in logs] == ["llm warm-up failed"]
        assert "".join(c.text for c in await collect(model, ASK)) == "Hi.", "the model still answers"
        await model.aclose()


# --- a real llama.cpp server on loopback -----------------------------------------------------------


@pytest.fixture(scope="module")
def llama_base_url() -> Iterator[str]:
    with llama_server(gemma_gguf()) as base:
        yield base


@pytest.mark.models
async def test_openai_sdk_against_a_real_llama_cpp_server_streams_an_answer(llama_base_url: str) -> None:
    model = OpenAICompatibleModel(llama_base_url, "gemma", timeout=60.0, extra_body={"stop": ["USER:"]})
    await model.warm_up()
    messages = [ChatMessage("user", "What is the capital of France? Answer in one word.")]
    chunks = await collect(model, messages, max_tokens=24)  # a hang fails on the 60 s timeout
    text = "".join(c.text for c in chunks)
    assert len([c for c in chunks if c.text]) >= 2, "expected the answer to arrive in several chunks"
    assert "paris" in text.lower()
    # llama-cpp-python's server ignores stream_options.include_usage, so these are the adapter's estimate.
    usage = chunks[-1].usage
    assert usage is not None and usage.input_tokens > 5 and 0 < usage.output_tokens <= 24
    assert chunks[-1].finish_reason == "stop"
    await model.aclose()
