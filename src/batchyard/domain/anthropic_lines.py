"""OpenAI batch lines <-> Anthropic Message Batches, both ways, as pure functions.

Going out, an OpenAI chat line (``"url": "/v1/chat/completions"``) becomes a Message Batch
request ``{"custom_id", "params"}``: system and developer turns become ``system``, text and
image parts become content blocks, ``tools`` / ``tool_choice`` / ``stop`` /
``max_(completion_)tokens`` are renamed, assistant ``tool_calls`` and ``tool`` turns become
``tool_use`` / ``tool_result`` blocks. What has no Anthropic equivalent (``n > 1``,
``logprobs``, penalties, ``logit_bias``, a ``temperature`` above 1, audio ...) raises
:class:`Untranslatable` so the line fails validation before anything is sent. A native line
(``"url": "/v1/messages"``, body = Messages params) passes through untouched.

Coming back, a results line becomes an OpenAI output line: ``succeeded`` is a 200 whose body
is a ``chat.completion`` (a native line keeps the Anthropic message as its body),
``errored`` is a 4xx/5xx response with an OpenAI error body (its status from the error
type, so transient errors stay retryable), ``expired`` / ``canceled`` are ``batch_expired``
/ ``batch_cancelled`` error lines, as OpenAI writes them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

import orjson

from batchyard.errors import BatchyardError

CHAT_URL = "/v1/chat/completions"
MESSAGES_URL = "/v1/messages"
DEFAULT_MAX_TOKENS = 4096

#: Chat parameters this module knows (translated, checked, or dropped as having no effect
#: on the answer: seed, store, metadata, service_tier, stream_options).
_KNOWN = frozenset({"model", "seed", "store", "metadata", "service_tier", "stream_options",
                      "user", "parallel_tool_calls", "response_format", "n", "stream",
                      "max_tokens", "max_completion_tokens", "messages", "stop", "temperature",
                      "top_p", "tools", "tool_choice", "logprobs", "presence_penalty",
                      "frequency_penalty", "logit_bias", "top_logprobs", "x_emulator"})
_ZERO_OK = {"presence_penalty": 0, "frequency_penalty": 0}
_STATUS_OF_TYPE = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
    "permission_error": 403, "not_found_error": 404, "request_too_large": 413,
    "rate_limit_error": 429, "api_error": 500, "timeout_error": 504, "overloaded_error": 529,
}
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop",
           "max_tokens": "length", "model_context_window_exceeded": "length",
           "tool_use": "tool_calls", "refusal": "content_filter"}
_EXPIRED = {"code": "batch_expired",
            "message": "This request could not be executed before the completion window "
                       "expired."}
_CANCELLED = {"code": "batch_cancelled",
              "message": "This request was not executed because the batch was cancelled."}


class Untranslatable(BatchyardError):
    """This request has no Anthropic equivalent."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message, code="untranslatable", param=param)


def is_native(url: str) -> bool:
    """A line already in Anthropic's shape (``/v1/messages``)."""
    return url.strip().rstrip("/").removeprefix("/v1") == "/messages"


def to_request(line: dict[str, Any], *, model: str | None = None,
               default_max_tokens: int = DEFAULT_MAX_TOKENS) -> dict[str, Any]:
    """A Message Batch request for one input line (``model`` replaces the line's model)."""
    url, body = str(line.get("url", "")), line.get("body")
    if not isinstance(body, dict):
        raise Untranslatable("body must be an object", "body")
    if is_native(url):
        params = body if model is None else {**body, "model": model}
    elif url.strip().rstrip("/").removeprefix("/v1") == "/chat/completions":
        params = chat_to_params(body, model=model, default_max_tokens=default_max_tokens)
    else:
        raise Untranslatable(f"Anthropic runs chat completions and messages, not {url}", "url")
    return {"custom_id": line["custom_id"], "params": params}


def chat_to_params(body: dict[str, Any], *, model: str | None = None,
                   default_max_tokens: int = DEFAULT_MAX_TOKENS) -> dict[str, Any]:
    """Messages params for a chat completions body."""
    _refuse_unsupported(body)
    system, messages = _messages(body.get("messages"))
    params: dict[str, Any] = {"model": model or _model_name(body.get("model")),
                              "max_tokens": _max_tokens(body, default_max_tokens),
                              "messages": messages}
    if system:
        params["system"] = system[0]["text"] if len(system) == 1 else system
    _sampling(body, params)
    _tools(body, params)
    user = body.get("user")
    if isinstance(user, str) and user:
        params["metadata"] = {"user_id": user}
    if "x_emulator" in body:  # the local emulator's fault marker travels as it is
        params["x_emulator"] = body["x_emulator"]
    return params


def _model_name(model: Any) -> str:
    if not isinstance(model, str) or not model:
        raise Untranslatable("model is missing", "model")
    return model.removeprefix("anthropic/")


def _refuse_unsupported(body: dict[str, Any]) -> None:
    for key in body:
        if key not in _KNOWN:
            raise Untranslatable(f"'{key}' has no Anthropic equivalent", key)
    n = body.get("n")
    if n not in (None, 1):
        raise Untranslatable("n > 1 (several choices) has no Anthropic equivalent", "n")
    if body.get("stream"):
        raise Untranslatable("stream is not supported in a batch", "stream")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise Untranslatable("logprobs have no Anthropic equivalent", "logprobs")
    for key, neutral in _ZERO_OK.items():
        if body.get(key) not in (None, neutral):
            raise Untranslatable(f"{key} has no Anthropic equivalent", key)
    if body.get("logit_bias"):
        raise Untranslatable("logit_bias has no Anthropic equivalent", "logit_bias")
    fmt = body.get("response_format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") != "text"):
        raise Untranslatable("response_format other than text has no Anthropic equivalent",
                             "response_format")


def _max_tokens(body: dict[str, Any], default: int) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise Untranslatable(f"{key} must be a positive integer", key)
            return value
    return default


def _sampling(body: dict[str, Any], params: dict[str, Any]) -> None:
    temperature = body.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, int | float) or not 0 <= temperature <= 1:
            raise Untranslatable("temperature must be between 0 and 1 on Anthropic",
                                 "temperature")
        params["temperature"] = temperature
    if body.get("top_p") is not None:
        params["top_p"] = body["top_p"]
    stop = body.get("stop")
    if isinstance(stop, str):
        params["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        params["stop_sequences"] = list(stop)
    elif stop is not None and stop != []:
        raise Untranslatable("stop must be a string or a list of strings", "stop")


def _tools(body: dict[str, Any], params: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools:
        params["tools"] = [_tool(n, tool) for n, tool in enumerate(tools)]
    choice = body.get("tool_choice")
    converted = _tool_choice(choice) if choice is not None else None
    if body.get("parallel_tool_calls") is False and tools:
        converted = {**(converted or {"type": "auto"}), "disable_parallel_tool_use": True}
    if converted is not None:
        params["tool_choice"] = converted


def _tool(n: int, tool: Any) -> dict[str, Any]:
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(tool, dict) or tool.get("type") != "function" or \
            not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise Untranslatable("only function tools have an Anthropic equivalent", f"tools.{n}")
    out: dict[str, Any] = {"name": function["name"],
                           "input_schema": function.get("parameters") or
                           {"type": "object", "properties": {}}}
    if function.get("description"):
        out["description"] = function["description"]
    return out


def _tool_choice(choice: Any) -> dict[str, Any]:
    simple = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}
    if isinstance(choice, str) and choice in simple:
        return simple[choice]
    function = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return {"type": "tool", "name": function["name"]}
    raise Untranslatable("tool_choice must be auto, required, none or a function",
                         "tool_choice")


def _messages(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system text blocks, messages with same-role neighbours merged)."""
    if not isinstance(messages, list) or not messages:
        raise Untranslatable("messages must be a non-empty list", "messages")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for n, message in enumerate(messages):
        if not isinstance(message, dict):
            raise Untranslatable("each message must be an object", f"messages.{n}")
        role = message.get("role")
        if role in ("system", "developer"):
            system += [{"type": "text", "text": text}
                       for text in _texts(message.get("content"), n)]
            continue
        role, blocks = _turn(n, message)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += blocks
        else:
            turns.append({"role": role, "content": blocks})
    if not turns:
        raise Untranslatable("messages need at least one user turn", "messages")
    return system, [_compact(turn) for turn in turns]


def _compact(turn: dict[str, Any]) -> dict[str, Any]:
    """A lone text block is sent as a plain string, as most people write it."""
    blocks = turn["content"]
    if len(blocks) == 1 and blocks[0]["type"] == "text":
        return {"role": turn["role"], "content": blocks[0]["text"]}
    return turn


def _texts(content: Any, n: int) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list) and all(
            isinstance(p, dict) and p.get("type") == "text" for p in content):
        return [str(p.get("text", "")) for p in content]
    raise Untranslatable("system messages must be text", f"messages.{n}.content")


def _turn(n: int, message: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    role = message.get("role")
    if role == "user":
        return "user", _user_blocks(n, message.get("content"))
    if role == "assistant":
        blocks = [{"type": "text", "text": t}
                  for t in (_texts(message["content"], n) if message.get("content") else [])]
        for m, call in enumerate(message.get("tool_calls") or []):
            blocks.append(_tool_use(f"messages.{n}.tool_calls.{m}", call))
        if not blocks:
            raise Untranslatable("an assistant message needs content or tool_calls",
                                 f"messages.{n}")
        return "assistant", blocks
    if role == "tool":
        content = message.get("content")
        text = "\n".join(_texts(content, n)) if content else ""
        return "user", [{"type": "tool_result", "tool_use_id": str(message.get("tool_call_id")),
                         "content": text}]
    raise Untranslatable(f"role {role!r} has no Anthropic equivalent", f"messages.{n}.role")


def _tool_use(param: str, call: Any) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise Untranslatable("a tool call needs a function name", param)
    try:
        arguments = orjson.loads(function.get("arguments") or "{}")
    except orjson.JSONDecodeError as exc:
        raise Untranslatable("tool call arguments must be JSON", param) from exc
    return {"type": "tool_use", "id": str(call.get("id") or ""), "name": function["name"],
            "input": arguments if isinstance(arguments, dict) else {"value": arguments}}


def _user_blocks(n: int, content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise Untranslatable("user content must be a string or a list of parts",
                             f"messages.{n}.content")
    return [_part(f"messages.{n}.content.{m}", part) for m, part in enumerate(content)]


def _part(param: str, part: Any) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        return {"type": "text", "text": str(part.get("text", ""))}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if isinstance(url, str):
            return {"type": "image", "source": _image_source(param, url)}
    raise Untranslatable(f"content part {kind!r} has no Anthropic equivalent", param)


def _image_source(param: str, url: str) -> dict[str, str]:
    if url.startswith(("http://", "https://")):
        return {"type": "url", "url": url}
    header, _, data = url.partition(",")
    if header.startswith("data:") and header.endswith(";base64") and data:
        try:
            base64.b64decode(data[:64] + "=" * (-len(data[:64]) % 4), validate=True)
        except binascii.Error as exc:
            raise Untranslatable("image data is not base64", param) from exc
        return {"type": "base64", "media_type": header[5:-7], "data": data}
    raise Untranslatable("images must be http(s) URLs or base64 data URLs", param)


# -- results -> OpenAI output lines --------------------------------------------------------

def to_output_line(item: dict[str, Any], *, native: bool = False,
                   created: int = 0) -> dict[str, Any]:
    """The OpenAI output line for one results line (``native``: keep Anthropic bodies)."""
    custom_id = str(item["custom_id"])
    result = item.get("result") or {}
    kind = result.get("type")
    line_id = "batch_req_" + hashlib.blake2b(custom_id.encode(), digest_size=16).hexdigest()
    if kind == "succeeded":
        message = result["message"]
        body = message if native else chat_completion(message, created)
        response = {"status_code": 200, "request_id": None, "body": body}
        return {"id": line_id, "custom_id": custom_id, "response": response, "error": None}
    if kind == "errored":
        return {"id": line_id, "custom_id": custom_id,
                "response": _error_response(result.get("error") or {}, native), "error": None}
    error = _EXPIRED if kind == "expired" else _CANCELLED
    if kind not in ("expired", "canceled"):
        error = {"code": "unknown_result", "message": f"Unknown result type {kind!r}."}
    return {"id": line_id, "custom_id": custom_id, "response": None, "error": dict(error)}


def _error_response(envelope: dict[str, Any], native: bool) -> dict[str, Any]:
    inner = envelope.get("error")
    if not isinstance(inner, dict):
        inner = {}
    kind = str(inner.get("type") or "api_error")
    status = _STATUS_OF_TYPE.get(kind, 500)
    body: dict[str, Any] = {"type": "error", "error": inner} if native else {"error": {
        "message": str(inner.get("message") or kind), "type": kind, "param": None,
        "code": kind}}
    return {"status_code": status, "request_id": envelope.get("request_id"), "body": body}


def chat_completion(message: dict[str, Any], created: int = 0) -> dict[str, Any]:
    """A ``chat.completion`` body for an Anthropic Message."""
    texts, calls = [], []
    for block in message.get("content") or []:
        if block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_use":
            calls.append({"id": block.get("id"), "type": "function", "function": {
                "name": block.get("name"),
                "arguments": orjson.dumps(block.get("input") or {}).decode()}})
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None,
                             "refusal": None}
    if calls:
        reply["tool_calls"] = calls
    stop = message.get("stop_reason")
    return {
        "id": str(message.get("id", "")), "object": "chat.completion", "created": created,
        "model": str(message.get("model", "")),
        "choices": [{"index": 0, "message": reply, "logprobs": None,
                     "finish_reason": _FINISH.get(str(stop), "stop")}],
        "usage": chat_usage(message.get("usage") or {}),
    }


def chat_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """OpenAI usage: prompt tokens include cache writes and reads (as Anthropic bills them)."""
    def count(name: str) -> int:
        value = usage.get(name)
        return value if isinstance(value, int) else 0

    cached, written = count("cache_read_input_tokens"), count("cache_creation_input_tokens")
    prompt = count("input_tokens") + written + cached
    completion = count("output_tokens")
    # The two cache counts are also given under Anthropic's names (as LiteLLM does), so the
    # cache writes, which cost more than plain input, can be priced apart.
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "cache_creation_input_tokens": written, "cache_read_input_tokens": cached}
