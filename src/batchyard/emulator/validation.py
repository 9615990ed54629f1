"""Streaming validation of a batch input file, as the providers do before running it.

Problems become ``errors.data`` entries ``{code, message, param, line}`` (1-based line
numbers) and the batch ends ``failed``. Problems inside a request ``body`` are not checked
here: the endpoint rejects those per request (they land in the error file).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from batchyard.emulator.outputs import estimate_input_tokens

MAX_REPORTED_ERRORS = 100
_BOM = b"\xef\xbb\xbf"


@dataclass
class ValidationResult:
    """What validation learned: the count, the model, the token estimate and any errors."""

    total: int = 0
    model: str | None = None
    tokens: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def add(self, code: str, message: str, line: int | None, param: str | None = None) -> None:
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"code": code, "message": message, "param": param, "line": line})


def normalize_url(url: str, azure: bool) -> str:
    """Azure accepts endpoints with or without the ``/v1`` prefix."""
    return url.removeprefix("/v1") if azure else url


@dataclass
class _LineChecker:
    endpoint: str
    azure: bool
    known_models: tuple[str, ...]
    result: ValidationResult
    seen: set[str] = field(default_factory=set)

    def check(self, number: int, raw: bytes) -> None:
        try:
            item = orjson.loads(raw)
        except orjson.JSONDecodeError:
            msg = "This line is not parseable as valid JSON."
            self.result.add("invalid_json_line", msg, number)
            return
        problem = self._shape_problem(item)
        if problem:
            self.result.add("invalid_request", problem[1], number, problem[0])
            return
        self._check_identity(number, item)

    def _shape_problem(self, item: Any) -> tuple[str | None, str] | None:
        if not isinstance(item, dict):
            return None, "Each line must be a JSON object."
        for key, kind in (("custom_id", str), ("method", str), ("url", str), ("body", dict)):
            if not isinstance(item.get(key), kind):
                return key, f"Missing or invalid required field '{key}'."
        if item["method"].upper() != "POST":
            return "method", "Only the POST method is supported."
        if not isinstance(item["body"].get("model"), str) or not item["body"]["model"]:
            return "body.model", "Missing required field 'model' in the request body."
        return None

    def _check_identity(self, number: int, item: dict[str, Any]) -> None:
        custom_id, url, model = item["custom_id"], item["url"], item["body"]["model"]
        if custom_id in self.seen:
            msg = f"The custom_id '{custom_id}' is duplicated."
            self.result.add("duplicate_custom_id", msg, number, "custom_id")
            return
        self.seen.add(custom_id)
        if url != self.endpoint and (
                normalize_url(url, self.azure) != normalize_url(self.endpoint, self.azure)):
            msg = f"The url '{url}' does not match the batch endpoint '{self.endpoint}'."
            self.result.add("url_mismatch", msg, number, "url")
            return
        if self.result.model is None:
            self.result.model = model
        elif model != self.result.model:
            first = self.result.model
            msg = f"All requests must use the same model; found '{model}' and '{first}'."
            self.result.add("model_mismatch", msg, number, "body.model")
            return
        if self.known_models and model not in self.known_models:
            noun = "deployment" if self.azure else "model"
            self.result.add("model_not_found", f"The {noun} '{model}' does not exist.", number,
                            "body.model")
            return
        self.result.tokens += estimate_input_tokens(url, item["body"])


def validate_lines(
    lines: Iterable[bytes],
    *,
    endpoint: str,
    azure: bool,
    max_requests: int,
    known_models: tuple[str, ...] = (),
) -> ValidationResult:
    """Check every line of an input file (given as an iterable of raw lines)."""
    result = ValidationResult()
    checker = _LineChecker(endpoint, azure, known_models, result)
    for number, raw in enumerate(lines, start=1):
        if number == 1 and raw.startswith(_BOM):
            if azure:
                result.add("invalid_request", _BOM_MESSAGE, 1)
                return result
            raw = raw[len(_BOM) :]
        if not raw.strip():
            continue
        result.total += 1
        checker.check(number, raw)
    if result.total == 0:
        result.add("empty_file", "The input file is empty; it contains no requests.", None)
    elif result.total > max_requests:
        msg = f"The batch has {result.total} requests; the limit is {max_requests}."
        result.add("too_many_tasks", msg, None)
    return result


_BOM_MESSAGE = (
    "Validation failed: A valid model deployment name couldn't be extracted from the input "
    "file. Please ensure that each row in the input file has a valid deployment name in the "
    "'model' field, and that the deployment name is consistent across all rows."
)
