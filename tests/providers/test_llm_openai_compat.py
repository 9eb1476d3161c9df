"""The OpenAI-compatible adapter against a stub that speaks the wire format, and a real llama.cpp server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from parley.providers.llm.base import ChatMessage, LLMChunk, ToolCall, ToolSpec
from parley.providers.llm.openai_compat import OpenAICompatError, OpenAICompatibleModel
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


async def test_fragmented_tool_call_deltas_assemble_into_exact_tool_calls() -> None:
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
    assert chunks[-1].usage is not None and (
        chunks[-1].usage.input_tokens,
        chunks[-1].usage.output_tokens,
    ) == (
        57,
        31,
    )
    assert chunks[-1].finish_reason == "tool_calls"
    sent = server.requests[0]
    assert server.paths == ["/v1/chat/completions"]
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


async def test_tool_round_trip_messages_go_out_in_openai_format() -> None:
    call = ToolCall("call_w1", "get_weather", {"city": "Paris"}, '{"city":"Paris"}')
    history = [
        *ASK,
        ChatMessage("assistant", tool_calls=(call,)),
        ChatMessage("tool", '{"sky":"sunny"}', tool_call_id="call_w1", name="get_weather"),
    ]
    async with StubServer([StubResponse(chunks=text_stream(["It's ", "sunny."]))]) as server:
        chunks = await collect(OpenAICompatibleModel(server.url, "m"), history, tools=[WEATHER])
    assert "".join(c.text for c in chunks) == "It's sunny."
    assert chunks[-1].usage is not None and chunks[-1].usage.input_tokens == 12
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


async def test_usage_is_estimated_when_the_server_sends_none() -> None:
    async with StubServer(
        [StubResponse(chunks=text_stream(["Hello ", "there, ", "friend."], usage=False))]
    ) as s:
        chunks = await collect(
            OpenAICompatibleModel(s.url, "m"), [ChatMessage("user", "Say hello to me, please")]
        )
    usage = chunks[-1].usage
    assert usage is not None and usage.input_tokens == 6 and usage.output_tokens == 5


async def test_server_errors_are_retried_before_the_first_byte() -> None:
    failing = StubResponse(status=503, chunks=[b'{"error": "overloaded"}'], content_type="application/json")
    async with StubServer([failing, failing, StubResponse(chunks=text_stream(["ok"]))]) as server:
        chunks = await collect(OpenAICompatibleModel(server.url, "m", max_attempts=3), ASK)
    assert "".join(c.text for c in chunks) == "ok"
    assert len(server.requests) == 3


async def test_http_error_carries_status_and_body_excerpt() -> None:
    failing = StubResponse(
        status=500, chunks=[b'{"error": "model exploded"}' + b" " * 2000], content_type="x"
    )
    async with StubServer([failing]) as server:
        with pytest.raises(OpenAICompatError) as caught:
            await collect(OpenAICompatibleModel(server.url, "m", max_attempts=2), ASK)
    assert caught.value.status == 500 and "model exploded" in caught.value.body
    assert len(caught.value.body) <= 500 and "HTTP 500" in str(caught.value)
    assert len(server.requests) == 2


async def test_client_errors_are_not_retried() -> None:
    bad = StubResponse(status=400, chunks=[b'{"error": "unknown model"}'], content_type="application/json")
    async with StubServer([bad]) as server:
        with pytest.raises(OpenAICompatError, match="unknown model") as caught:
            await collect(OpenAICompatibleModel(server.url, "m"), ASK)
    assert caught.value.status == 400 and len(server.requests) == 1


async def test_a_reply_that_is_not_a_stream_is_an_error_not_silence() -> None:
    plain = StubResponse(
        chunks=[b'{"choices": [{"message": {"content": "Hi"}}]}'], content_type="application/json"
    )
    async with StubServer([plain]) as server:
        with pytest.raises(OpenAICompatError, match="event-stream") as caught:
            await collect(OpenAICompatibleModel(server.url, "m"), ASK)
    assert caught.value.status == 200 and "Hi" in caught.value.body and len(server.requests) == 1


async def test_malformed_chunk_raises_after_the_text_before_it() -> None:
    broken = sse({"choices": [{"index": 0, "delta": {"content": "Hel"}}]}, '{"choices": [{"delta": oops')
    async with StubServer([StubResponse(chunks=broken)]) as server:
        model = OpenAICompatibleModel(server.url, "m")
        seen: list[str] = []
        with pytest.raises(OpenAICompatError, match="malformed") as caught:
            async for chunk in model.stream(ASK):
                seen.append(chunk.text)
    assert seen == ["Hel"] and "oops" in caught.value.body and len(server.requests) == 1


async def test_connection_refused_is_a_clear_error() -> None:
    model = OpenAICompatibleModel(f"http://127.0.0.1:{free_port()}/v1", "m", max_attempts=2)
    started = time.monotonic()
    with pytest.raises(OpenAICompatError, match="cannot reach") as caught:
        await collect(model, ASK)
    assert caught.value.status is None and time.monotonic() - started < 5


async def test_a_stalled_stream_times_out() -> None:
    stall = StubResponse(chunks=[*text_stream(["Hi"])[:1], b""], delay=2.0)
    async with StubServer([stall]) as server:
        model = OpenAICompatibleModel(server.url, "m", timeout=0.3)
        with pytest.raises(OpenAICompatError, match="timed out"):
            await collect(model, ASK)


async def test_cancelling_the_consumer_closes_the_http_stream() -> None:
    slow = StubResponse(chunks=text_stream([f"w{i} " for i in range(40)]), delay=0.05)
    async with StubServer([slow]) as server:
        model = OpenAICompatibleModel(server.url, "m")
        await cancel_after(model.stream(ASK), 2)
        await asyncio.wait_for(server.disconnected.wait(), timeout=1.0)
        assert server.chunks_sent < 10


# --- a real llama.cpp server on loopback -----------------------------------------------------------


@pytest.fixture(scope="module")
def llama_base_url() -> Iterator[str]:
    with llama_server(gemma_gguf()) as base:
        yield base


@pytest.mark.models
async def test_real_llama_cpp_server_streams_an_answer_with_usage(llama_base_url: str) -> None:
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
