"""Deterministic response bodies for batched requests, with realistic ``usage``.

The content is derived from the request (a hash plus a snippet of the prompt), so the same
request always gets the same answer; token counts use the usual ~4 characters per token.
"""

from __future__ import annotations

import hashlib
import math
import struct
import time
import zlib
from typing import Any

import orjson

from batchyard.emulator import ids

_CHARS_PER_TOKEN = 4


def count_tokens(text: str) -> int:
    """A rough token count (about 4 characters each, at least 1 for non-empty text)."""
    return (len(text) + _CHARS_PER_TOKEN - 1) // _CHARS_PER_TOKEN


def _text_of(value: Any) -> str:
    """The textual content of a message content / input item, whatever its shape."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(_text_of(item) for item in value)
    if isinstance(value, dict):
        for key in ("text", "content", "input_text"):
            if key in value:
                return _text_of(value[key])
    return ""


def _texts(kind: str, body: dict[str, Any]) -> list[str]:
    """The prompt texts of a request body for an endpoint kind (see :func:`endpoint_kind`)."""
    if kind == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list):
            return []
        texts = []
        for m in messages:
            if isinstance(m, dict):
                content = m.get("content")
                texts.append(content if isinstance(content, str) else _text_of(content))
        return texts
    key = "prompt" if kind == "completions" else "input"
    value = body.get(key)
    if isinstance(value, list):
        return [_text_of(v) if not isinstance(v, int) else "tok" for v in value]
    return [_text_of(value)]


def _prompt_tokens(kind: str, texts: list[str]) -> int:
    """Prompt tokens of the texts of one request (chat adds a per-message overhead)."""
    overhead = 3 + 4 * len(texts) if kind == "chat" else 0
    return overhead + sum((len(t) + _CHARS_PER_TOKEN - 1) // _CHARS_PER_TOKEN for t in texts)


def estimate_input_tokens(endpoint: str, body: dict[str, Any]) -> int:
    """Prompt tokens of one request (also what the enqueued-token quota counts)."""
    kind = endpoint_kind(endpoint)
    return _prompt_tokens(kind, _texts(kind, body))


_KINDS = {
    "/chat/completions": "chat",
    "/embeddings": "embeddings",
    "/responses": "responses",
    "/completions": "completions",
    "/moderations": "moderations",
}


def endpoint_kind(endpoint: str) -> str:
    """``chat``, ``embeddings``, ``responses``, ``completions``, ``moderations`` or other."""
    return _KINDS.get(endpoint.removeprefix("/v1"), "other")


_REQUIRED = {
    "chat": "messages",
    "embeddings": "input",
    "responses": "input",
    "completions": "prompt",
    "moderations": "input",
}


def body_problem(endpoint: str, body: dict[str, Any]) -> tuple[str, str] | None:
    """Why the endpoint itself would reject ``body`` with a 400, as (param, message)."""
    required = _REQUIRED.get(endpoint_kind(endpoint))
    if required and body.get(required) in (None, "", []):
        return required, f"Missing required parameter: '{required}'."
    if body.get("stream") is True:
        return "stream", "Streaming is not supported in the Batch API."
    return None


def _digest(body: dict[str, Any]) -> str:
    """8 hex digits that depend only on the request body (its JSON, keys in their order)."""
    try:
        data = orjson.dumps(body)
    except TypeError:  # not JSON-serialisable: a body built in Python, not read from a file
        data = repr(body).encode()
    return f"{zlib.crc32(data):08x}"


def _reply(body: dict[str, Any], texts: list[str]) -> tuple[str, str]:
    """The deterministic answer text and its finish reason."""
    digest = _digest(body)
    prompt = texts[-1] if texts else ""
    text = f"Emulated answer {digest} to: {prompt[:60]}"
    cap = body.get("max_completion_tokens") or body.get("max_tokens") or body.get(
        "max_output_tokens"
    )
    if isinstance(cap, int) and cap > 0 and count_tokens(text) > cap:
        return text[: cap * _CHARS_PER_TOKEN], "length"
    return text, "stop"


def _azure_filters() -> dict[str, Any]:
    safe = {"filtered": False, "severity": "safe"}
    return {"hate": safe, "self_harm": safe, "sexual": safe, "violence": safe}


def chat_completion(body: dict[str, Any], azure: bool) -> tuple[dict[str, Any], int, int]:
    """A ``chat.completion`` body plus (input, output) tokens."""
    texts = _texts("chat", body)
    text, finish = _reply(body, texts)
    prompt_tokens = _prompt_tokens("chat", texts)
    out = count_tokens(text)
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []},
        "logprobs": None,
        "finish_reason": finish,
    }
    result: dict[str, Any] = {
        "id": ids.prefixed_hex("chatcmpl-", 28),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body.get("model", "")),
        "choices": [choice],
        "usage": _chat_usage(prompt_tokens, out),
        "system_fingerprint": "fp_emulator",
    }
    if azure:
        choice["content_filter_results"] = _azure_filters()
        result["prompt_filter_results"] = [
            {"prompt_index": 0, "content_filter_results": _azure_filters()}
        ]
    return result, prompt_tokens, out


def _chat_usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _vector(text: str, dims: int) -> list[float]:
    """A unit vector derived from ``text``."""
    raw = b""
    counter = 0
    while len(raw) < dims * 4:
        raw += hashlib.blake2b(f"{counter}:{text}".encode(), digest_size=64).digest()
        counter += 1
    values = [v / 2**31 for v in struct.unpack(f"<{dims}i", raw[: dims * 4])]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


def embedding_list(body: dict[str, Any], dims: int) -> tuple[dict[str, Any], int, int]:
    """An embeddings ``list`` body (one vector per input) plus (input, 0) tokens."""
    texts = _texts("embeddings", body)
    wanted = body.get("dimensions")
    size = wanted if isinstance(wanted, int) and 0 < wanted <= 4096 else dims
    data = [
        {"object": "embedding", "index": i, "embedding": _vector(t, size)}
        for i, t in enumerate(texts)
    ]
    tokens = _prompt_tokens("embeddings", texts)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    model = str(body.get("model", ""))
    return {"object": "list", "data": data, "model": model, "usage": usage}, tokens, 0


def response_object(body: dict[str, Any]) -> tuple[dict[str, Any], int, int]:
    """A ``response`` object (``/v1/responses``) plus (input, output) tokens."""
    texts = _texts("responses", body)
    text, finish = _reply(body, texts)
    tokens_in = _prompt_tokens("responses", texts)
    tokens_out = count_tokens(text)
    message = {
        "type": "message",
        "id": ids.prefixed_hex("msg_", 32),
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }
    created = int(time.time())
    return {
        "id": ids.prefixed_hex("resp_", 32),
        "object": "response",
        "created_at": created,
        "completed_at": created,
        "status": "completed" if finish == "stop" else "incomplete",
        "incomplete_details": None if finish == "stop" else {"reason": "max_output_tokens"},
        "error": None,
        "model": str(body.get("model", "")),
        "output": [message],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "temperature": body.get("temperature", 1.0),
        "top_p": body.get("top_p", 1.0),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "usage": {
            "input_tokens": tokens_in,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": tokens_out,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": tokens_in + tokens_out,
        },
    }, tokens_in, tokens_out


def text_completion(body: dict[str, Any]) -> tuple[dict[str, Any], int, int]:
    """A legacy ``text_completion`` body plus (input, output) tokens."""
    texts = _texts("completions", body)
    text, finish = _reply(body, texts)
    tokens_in = _prompt_tokens("completions", texts)
    tokens_out = count_tokens(text)
    return {
        "id": ids.prefixed_hex("cmpl-", 28),
        "object": "text_completion",
        "created": int(time.time()),
        "model": str(body.get("model", "")),
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        },
    }, tokens_in, tokens_out


def moderation(body: dict[str, Any]) -> tuple[dict[str, Any], int, int]:
    """A moderation result that flags nothing."""
    texts = _texts("moderations", body)
    result = {"flagged": False, "categories": {}, "category_scores": {}}
    return {
        "id": ids.prefixed_hex("modr-", 24),
        "model": str(body.get("model", "omni-moderation-latest")),
        "results": [result for _ in texts],
    }, 0, 0


def success_body(
    endpoint: str, body: dict[str, Any], *, azure: bool, dims: int
) -> tuple[dict[str, Any], int, int]:
    """The body the synchronous endpoint would return, plus (input, output) tokens."""
    kind = endpoint_kind(endpoint)
    if kind == "chat":
        return chat_completion(body, azure)
    if kind == "embeddings":
        return embedding_list(body, dims)
    if kind == "responses":
        return response_object(body)
    if kind == "completions":
        return text_completion(body)
    if kind == "moderations":
        return moderation(body)
    return {"object": "emulated", "model": str(body.get("model", ""))}, 0, 0
