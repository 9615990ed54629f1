"""Response bodies: deterministic content derived from the request, consistent usage."""

from __future__ import annotations

import math

from batchyard.emulator import outputs

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "What is 2 + 2?"}]}


def _content(body: dict) -> str:
    return body["choices"][0]["message"]["content"]


def test_the_same_request_gets_the_same_answer_and_another_request_another() -> None:
    first, _, _ = outputs.chat_completion(CHAT, azure=False)
    again, _, _ = outputs.chat_completion(dict(CHAT), azure=False)
    other, _, _ = outputs.chat_completion({**CHAT, "messages": [{"role": "user",
                                                                   "content": "Hi"}]}, False)
    assert _content(first) == _content(again)
    assert _content(first) != _content(other)
    assert "What is 2 + 2?" in _content(first)


def test_chat_usage_adds_up_and_matches_the_reported_tokens() -> None:
    body, tokens_in, tokens_out = outputs.chat_completion(CHAT, azure=False)
    usage = body["usage"]
    assert usage["prompt_tokens"] == tokens_in > 0
    assert usage["completion_tokens"] == tokens_out > 0
    assert usage["total_tokens"] == tokens_in + tokens_out
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")


def test_max_tokens_truncates_and_reports_length() -> None:
    body, _, tokens_out = outputs.chat_completion({**CHAT, "max_tokens": 2}, azure=False)
    assert body["choices"][0]["finish_reason"] == "length"
    assert tokens_out <= 2


def test_azure_chat_bodies_carry_content_filter_results() -> None:
    body, _, _ = outputs.chat_completion(CHAT, azure=True)
    assert body["prompt_filter_results"][0]["prompt_index"] == 0
    assert "content_filter_results" in body["choices"][0]
    plain, _, _ = outputs.chat_completion(CHAT, azure=False)
    assert "prompt_filter_results" not in plain


def test_embeddings_give_one_unit_vector_per_input_deterministically() -> None:
    body = {"model": "text-embedding-3-small", "input": ["alpha", "beta"]}
    result, tokens, _ = outputs.embedding_list(body, dims=8)
    again, _, _ = outputs.embedding_list(body, dims=8)
    vectors = [item["embedding"] for item in result["data"]]
    assert [item["index"] for item in result["data"]] == [0, 1]
    assert all(len(v) == 8 for v in vectors)
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, abs_tol=1e-4)
               for v in vectors)
    assert vectors[0] != vectors[1]
    assert vectors == [item["embedding"] for item in again["data"]]
    assert result["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}


def test_embeddings_honour_requested_dimensions() -> None:
    result, _, _ = outputs.embedding_list({"model": "m", "input": "x", "dimensions": 5}, dims=8)
    assert len(result["data"][0]["embedding"]) == 5


def test_responses_endpoint_returns_a_response_object() -> None:
    body, tokens_in, tokens_out = outputs.response_object({"model": "gpt-4o", "input": "Hello"})
    assert body["object"] == "response" and body["status"] == "completed"
    text = body["output"][0]["content"][0]["text"]
    assert "Hello" in text
    assert body["usage"]["total_tokens"] == tokens_in + tokens_out


def test_missing_required_parameter_is_a_body_problem() -> None:
    assert outputs.body_problem("/v1/chat/completions", {"model": "m"}) == (
        "messages", "Missing required parameter: 'messages'.")
    assert outputs.body_problem("/chat/completions", CHAT) is None
    assert outputs.body_problem("/v1/embeddings", {"model": "m", "input": "x"}) is None


def test_token_estimate_grows_with_the_prompt() -> None:
    short = outputs.estimate_input_tokens("/v1/chat/completions", CHAT)
    long = outputs.estimate_input_tokens(
        "/v1/chat/completions",
        {"model": "m", "messages": [{"role": "user", "content": "word " * 400}]})
    assert 0 < short < long
    assert long >= 500


def test_bodies_parse_into_the_official_sdk_types() -> None:
    from openai.types import Completion, CreateEmbeddingResponse
    from openai.types.chat import ChatCompletion
    from openai.types.responses import Response

    chat, _, _ = outputs.chat_completion(CHAT, azure=True)
    assert ChatCompletion.model_validate(chat).choices[0].finish_reason == "stop"
    response, _, _ = outputs.response_object({"model": "gpt-4o", "input": "Hi"})
    assert "Hi" in Response.model_validate(response).output_text
    embedding, _, _ = outputs.embedding_list({"model": "m", "input": "x"}, dims=3)
    assert len(CreateEmbeddingResponse.model_validate(embedding).data[0].embedding) == 3
    completion, _, _ = outputs.text_completion({"model": "m", "prompt": "Once"})
    assert "Once" in Completion.model_validate(completion).choices[0].text
