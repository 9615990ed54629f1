"""One Anthropic Messages request inside a Message Batch: its checks and its answer.

The checks are the ones the Messages endpoint applies to ``params`` (a problem becomes an
``errored`` result line, never a failed create). The answer is deterministic: a digest of
the params plus a snippet of the last user turn, with a ``tool_use`` block when the request
forces a tool, ``max_tokens`` and ``stop_sequences`` honoured, and usage counted at about
four characters per token.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from batchyard.emulator import ids
from batchyard.emulator.errors import ANTHROPIC_TYPES
from batchyard.emulator.outputs import count_tokens
from batchyard.emulator.requests import Outcome

KNOWN_PARAMS = frozenset({
    "model", "max_tokens", "messages", "system", "temperature", "top_p", "top_k",
    "stop_sequences", "tools", "tool_choice", "metadata", "stream", "thinking",
    "service_tier", "container", "mcp_servers", "context_management", "output_config",
    "output_format", "cache_control", "inference_geo", "speed", "diagnostics",
    "x_emulator",
})
_ROLES = ("user", "assistant")
_TOOL_CHOICES = ("auto", "any", "tool", "none")


@dataclass(frozen=True)
class MessageResult:
    """A request's fate as an Anthropic result: ``succeeded`` / ``errored`` / ``canceled`` /
    ``expired``, with the message or the error."""

    type: str
    message: dict[str, Any] | None = None
    error_type: str | None = None
    error_message: str | None = None

    def line(self, custom_id: str) -> dict[str, Any]:
        """The results-file line."""
        result: dict[str, Any] = {"type": self.type}
        if self.message is not None:
            result["message"] = self.message
        if self.type == "errored":
            result["error"] = {"type": "error", "error": {
                "type": self.error_type, "message": self.error_message}}
        return {"custom_id": custom_id, "result": result}


def params_problem(params: Any, known_models: tuple[str, ...] = ()) -> tuple[str, str] | None:
    """Why the Messages endpoint would refuse ``params``, as (error type, message)."""
    if not isinstance(params, dict):
        return "invalid_request_error", "params: Input should be a valid dictionary"
    for check in (_top_level, _messages, _sampling, _tools):
        problem = check(params)
        if problem:
            return "invalid_request_error", problem
    if known_models and params["model"] not in known_models:
        return "not_found_error", f"model: {params['model']}"
    return None


def _top_level(params: dict[str, Any]) -> str | None:
    for key in params:
        if key not in KNOWN_PARAMS:
            return f"{key}: Extra inputs are not permitted"
    if not isinstance(params.get("model"), str) or not params["model"]:
        return "model: Field required"
    tokens = params.get("max_tokens")
    if not isinstance(tokens, int) or isinstance(tokens, bool):
        return "max_tokens: Field required"
    if tokens < 1:
        return "max_tokens: Input should be greater than or equal to 1"
    if params.get("stream") is True:
        return "stream: Streaming is not supported in the Message Batches API"
    system = params.get("system")
    if system is not None and not isinstance(system, str | list):
        return "system: Input should be a valid string or list of text blocks"
    return None


def _messages(params: dict[str, Any]) -> str | None:
    messages = params.get("messages")
    if not isinstance(messages, list):
        return "messages: Field required"
    if not messages:
        return "messages: at least one message is required"
    for n, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            return f"messages.{n}.role: Input should be 'user' or 'assistant'"
        content = message.get("content")
        if not isinstance(content, str | list):
            return f"messages.{n}.content: Field required"
        if isinstance(content, list) and not all(
                isinstance(block, dict) and isinstance(block.get("type"), str)
                for block in content):
            return f"messages.{n}.content: each content block needs a 'type'"
    if messages[0]["role"] != "user" and len(messages) > 1:
        return "messages: first message must use the \"user\" role"
    return None


def _sampling(params: dict[str, Any]) -> str | None:
    for name in ("temperature", "top_p"):
        value = params.get(name)
        if value is not None and (not isinstance(value, int | float) or not 0 <= value <= 1):
            return f"{name}: range: 0 <= {name} <= 1"
    top_k = params.get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 0):
        return "top_k: Input should be greater than or equal to 0"
    stops = params.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list)
                              or not all(isinstance(s, str) and s.strip() for s in stops)):
        return "stop_sequences: each stop sequence must contain non-whitespace"
    return None


def _tools(params: dict[str, Any]) -> str | None:
    tools = params.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            return "tools: Input should be a valid list"
        for n, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                return f"tools.{n}.name: Field required"
            if "type" not in tool and not isinstance(tool.get("input_schema"), dict):
                return f"tools.{n}.input_schema: Field required"
    choice = params.get("tool_choice")
    if choice is None:
        return None
    if not isinstance(choice, dict) or choice.get("type") not in _TOOL_CHOICES:
        return "tool_choice: Input tag does not match any of 'auto', 'any', 'tool', 'none'"
    if choice["type"] == "tool":
        names = {t.get("name") for t in tools or [] if isinstance(t, dict)}
        if choice.get("name") not in names:
            return f"tool_choice.name: tool {choice.get('name')!r} is not in tools"
    elif choice["type"] == "any" and not tools:
        return "tool_choice: 'any' needs tools"
    return None


def _texts(value: Any) -> Iterator[str]:
    """Every text inside a content value or a block list."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for block in value:
            if isinstance(block, dict):
                if isinstance(block.get("text"), str):
                    yield block["text"]
                elif "content" in block:
                    yield from _texts(block["content"])
                elif block.get("type") == "image":
                    yield "i" * 6000  # about 1,500 tokens, like a small picture
                elif "input" in block:
                    yield orjson.dumps(block["input"]).decode()


def input_tokens(params: dict[str, Any]) -> int:
    """The prompt's tokens (system, every turn, tool definitions)."""
    messages = params.get("messages") or []
    total = 3 + 4 * len(messages)
    total += sum(count_tokens(t) for t in _texts(params.get("system")))
    for message in messages:
        total += sum(count_tokens(t) for t in _texts(message.get("content")))
    if params.get("tools"):
        total += 200 + count_tokens(orjson.dumps(params["tools"]).decode())
    return total


def _last_user_text(params: dict[str, Any]) -> str:
    for message in reversed(params.get("messages") or []):
        if message.get("role") == "user":
            return " ".join(_texts(message.get("content")))
    return ""


def _forced_tool(params: dict[str, Any]) -> str | None:
    choice = params.get("tool_choice") or {}
    tools = params.get("tools") or []
    if choice.get("type") == "tool":
        return str(choice["name"])
    if choice.get("type") == "any" and tools:
        return str(tools[0]["name"])
    return None


def message(params: dict[str, Any]) -> dict[str, Any]:
    """The Message the endpoint would return for valid ``params``."""
    digest = hashlib.blake2b(orjson.dumps(params, option=orjson.OPT_SORT_KEYS),
                             digest_size=4).hexdigest()
    prompt = _last_user_text(params)
    tool = _forced_tool(params)
    content: list[dict[str, Any]]
    stop_sequence = None
    if tool is not None:
        arguments = {"emulated": digest, "about": prompt[:40]}
        content = [{"type": "tool_use", "id": ids.tool_use_id(), "name": tool,
                    "input": arguments}]
        stop_reason, out = "tool_use", 12 + count_tokens(orjson.dumps(arguments).decode())
    else:
        text, stop_reason, stop_sequence = _reply(f"Emulated answer {digest} to: {prompt[:60]}",
                                                  params)
        content = [{"type": "text", "text": text, "citations": None}]
        out = max(1, count_tokens(text))
    return {
        "id": ids.message_id(), "type": "message", "role": "assistant",
        "model": params["model"], "content": content, "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": {"input_tokens": input_tokens(params), "output_tokens": out,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                  "cache_creation": {"ephemeral_1h_input_tokens": 0,
                                     "ephemeral_5m_input_tokens": 0},
                  "service_tier": "batch"},
    }


def _reply(text: str, params: dict[str, Any]) -> tuple[str, str, str | None]:
    """Cut at the first stop sequence found, then at ``max_tokens``."""
    for stop in params.get("stop_sequences") or []:
        at = text.find(stop)
        if at >= 0:
            return text[:at], "stop_sequence", stop
    cap = params["max_tokens"]
    if count_tokens(text) > cap:
        return text[: cap * 4], "max_tokens", None
    return text, "end_turn", None


def run_message(params: Any, injected: Outcome | None,
                known_models: tuple[str, ...] = ()) -> MessageResult:
    """One request's result (``injected``: a fault decided by the caller)."""
    if injected is not None:
        return _from_fault(injected)
    problem = params_problem(params, known_models)
    if problem:
        return MessageResult("errored", error_type=problem[0], error_message=problem[1])
    return MessageResult("succeeded", message=message(params))


def _from_fault(outcome: Outcome) -> MessageResult:
    code = (outcome.error or {}).get("code")
    if code == "batch_expired":
        return MessageResult("expired")
    if code == "batch_cancelled":
        return MessageResult("canceled")
    if outcome.status is None:
        return MessageResult("errored", error_type="api_error",
                             error_message="The request timed out.")
    status = outcome.status
    kind = ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    messages = {"overloaded_error": "Overloaded", "api_error": "Internal server error",
                "rate_limit_error": "Rate limit exceeded"}
    return MessageResult("errored", error_type=kind,
                         error_message=messages.get(kind, f"Request failed with status {status}"))
