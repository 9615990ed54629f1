"""OpenAI chat lines <-> Anthropic Message Batches requests and results."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from batchyard.domain.anthropic_lines import (
    Untranslatable,
    chat_to_params,
    to_output_line,
    to_request,
)
from batchyard.domain.jsonl import iter_output_lines
from batchyard.emulator.messages import message as emulated_message
from batchyard.emulator.messages import params_problem

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


def chat(**body: Any) -> dict[str, Any]:
    base = {"model": "anthropic/claude-sonnet-4-5",
            "messages": [{"role": "user", "content": "Hi"}]}
    return {**base, **body}


def line(body: dict[str, Any], url: str = "/v1/chat/completions") -> dict[str, Any]:
    return {"custom_id": "c-1", "method": "POST", "url": url, "body": body}


def test_a_plain_chat_becomes_messages_params_with_the_default_max_tokens() -> None:
    params = chat_to_params(chat(), default_max_tokens=1000)
    assert params == {"model": "claude-sonnet-4-5", "max_tokens": 1000,
                      "messages": [{"role": "user", "content": "Hi"}]}


def test_system_roles_sampling_stop_and_max_tokens_are_mapped() -> None:
    body = chat(messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Bonjour"},
        {"role": "user", "content": [{"type": "text", "text": "And?"},
                                     {"type": "image_url",
                                      "image_url": {"url": "https://x.test/a.png"}},
                                     {"type": "image_url",
                                      "image_url": {"url": "data:image/png;base64,iVBORw0K"}}]},
    ], temperature=0.2, top_p=0.9, stop="END", max_completion_tokens=77, seed=4, user="u-9")
    params = chat_to_params(body, model="claude-haiku-4-5")
    assert params["model"] == "claude-haiku-4-5" and params["max_tokens"] == 77
    assert params["system"] == [{"type": "text", "text": "Be brief."},
                                {"type": "text", "text": "Use French."}]
    assert (params["temperature"], params["top_p"], params["stop_sequences"]) == (
        0.2, 0.9, ["END"])
    assert params["metadata"] == {"user_id": "u-9"} and "seed" not in params
    assert [m["role"] for m in params["messages"]] == ["user", "assistant", "user"]
    assert params["messages"][2]["content"] == [
        {"type": "text", "text": "And?"},
        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "iVBORw0K"}}]
    assert params_problem(params) is None  # what the Messages endpoint accepts


def test_tools_tool_choice_and_tool_turns_are_mapped() -> None:
    body = chat(tools=TOOLS, tool_choice={"type": "function", "function": {
        "name": "get_weather"}}, parallel_tool_calls=False, messages=[
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_2", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "rain"},
    ])
    params = chat_to_params(body)
    assert params["tools"] == [{"name": "get_weather", "description": "Weather for a city",
                                "input_schema": TOOLS[0]["function"]["parameters"]}]
    assert params["tool_choice"] == {"type": "tool", "name": "get_weather",
                                     "disable_parallel_tool_use": True}
    assistant, results = params["messages"][1], params["messages"][2]
    assert assistant["content"][1] == {"type": "tool_use", "id": "call_2",
                                       "name": "get_weather", "input": {"city": "Rome"}}
    assert results == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": "rain"}]}
    assert params_problem(params) is None
    assert chat_to_params(chat(tools=TOOLS, tool_choice="required"))["tool_choice"] == {
        "type": "any"}


@pytest.mark.parametrize(("extra", "param"), [
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"frequency_penalty": 1}, "frequency_penalty"),
    ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ({"temperature": 1.5}, "temperature"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"audio": {"voice": "alloy"}}, "audio"),
    ({"stream": True}, "stream"),
    ({"tools": [{"type": "web_search"}]}, "tools.0"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
     "messages.0.content.0"),
    ({"messages": [{"role": "function", "content": "x", "name": "f"}]}, "messages.0.role"),
    ({"messages": [{"role": "system", "content": "only a system prompt"}]}, "messages"),
    ({"max_tokens": 0}, "max_tokens"),
])
def test_untranslatable_requests_name_the_parameter(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(Untranslatable) as caught:
        chat_to_params(chat(**extra))
    assert caught.value.param == param and caught.value.code == "untranslatable"


def test_neutral_values_are_accepted() -> None:
    params = chat_to_params(chat(n=1, presence_penalty=0, logprobs=False,
                                 response_format={"type": "text"}, stop=[]))
    assert "stop_sequences" not in params


def test_native_lines_pass_through_untouched_and_other_urls_are_refused() -> None:
    native = {"model": "claude-opus-4-1", "max_tokens": 10, "top_k": 5,
              "messages": [{"role": "user", "content": "x"}]}
    assert to_request(line(native, "/v1/messages")) == {"custom_id": "c-1", "params": native}
    assert to_request(line(chat(), "/chat/completions"))["params"]["max_tokens"] == 4096
    with pytest.raises(Untranslatable):
        to_request(line({"model": "m", "input": "x"}, "/v1/embeddings"))


def _results(*items: dict[str, Any]) -> list[Any]:
    data = b"".join(orjson.dumps(to_output_line(item, created=1700000000)) + b"\n"
                    for item in items)
    return list(iter_output_lines([data]))


def test_a_succeeded_message_becomes_a_chat_completion_line() -> None:
    params = chat_to_params(chat(messages=[{"role": "user", "content": "weather?"}],
                                 tools=TOOLS, tool_choice="required"))
    message = emulated_message(params)
    message["usage"].update(cache_creation_input_tokens=5, cache_read_input_tokens=7)
    out = to_output_line({"custom_id": "c-1", "result": {"type": "succeeded",
                                                         "message": message}},
                         created=1700000000)
    body = out["response"]["body"]
    assert out["response"]["status_code"] == 200 and out["error"] is None
    assert out["id"].startswith("batch_req_") and body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == message["content"][0]["input"]
    usage = message["usage"]
    assert body["usage"]["prompt_tokens"] == usage["input_tokens"] + 12
    assert body["usage"]["completion_tokens"] == usage["output_tokens"]
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 7}
    assert body["usage"]["cache_creation_input_tokens"] == 5
    parsed = _results({"custom_id": "c-1", "result": {"type": "succeeded",
                                                      "message": message}})[0]
    assert parsed.ok and parsed.input_tokens == usage["input_tokens"] + 12
    assert (parsed.cached_tokens, parsed.cache_write_tokens) == (7, 5)


@pytest.mark.parametrize(("stop", "finish"), [("end_turn", "stop"), ("max_tokens", "length"),
                                               ("stop_sequence", "stop")])
def test_stop_reasons_map_to_finish_reasons(stop: str, finish: str) -> None:
    message = {"id": "msg_1", "model": "claude", "stop_reason": stop,
               "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
               "usage": {"input_tokens": 3, "output_tokens": 2}}
    body = to_output_line({"custom_id": "x", "result": {"type": "succeeded",
                                                        "message": message}})["response"]["body"]
    assert body["choices"][0]["finish_reason"] == finish
    assert body["choices"][0]["message"]["content"] == "ab"


def test_errored_expired_and_canceled_become_openai_error_lines() -> None:
    overloaded = {"custom_id": "o", "result": {"type": "errored", "error": {
        "type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}}}
    invalid = {"custom_id": "i", "result": {"type": "errored", "error": {
        "type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}}}
    expired = {"custom_id": "e", "result": {"type": "expired"}}
    canceled = {"custom_id": "c", "result": {"type": "canceled"}}
    parsed = {r.custom_id: r for r in _results(overloaded, invalid, expired, canceled)}
    assert (parsed["o"].status_code, parsed["o"].retryable, parsed["o"].error_message) == (
        529, True, "Overloaded")
    assert (parsed["i"].status_code, parsed["i"].retryable) == (400, False)
    assert parsed["i"].error_code == "invalid_request_error"
    assert (parsed["e"].error_code, parsed["e"].retryable) == ("batch_expired", True)
    assert (parsed["c"].error_code, parsed["c"].ok) == ("batch_cancelled", False)


def test_native_results_keep_the_anthropic_bodies() -> None:
    message = {"id": "msg_1", "type": "message", "content": [], "usage": {
        "input_tokens": 1, "output_tokens": 1}}
    out = to_output_line({"custom_id": "n", "result": {"type": "succeeded",
                                                       "message": message}}, native=True)
    assert out["response"]["body"] == message
    errored = to_output_line({"custom_id": "n", "result": {"type": "errored", "error": {
        "type": "error", "error": {"type": "api_error", "message": "boom"}}}}, native=True)
    assert errored["response"] == {"status_code": 500, "request_id": None, "body": {
        "type": "error", "error": {"type": "api_error", "message": "boom"}}}
