"""Identifier shapes as each provider mints them (file-, batch_, msgbatch_ and Azure forms)."""

from __future__ import annotations

import os
import secrets
import string
import uuid

_BASE62 = string.digits + string.ascii_letters


def _base62(length: int) -> str:
    return "".join(secrets.choice(_BASE62) for _ in range(length))


def upload_file_id(flavor: str) -> str:
    """An uploaded file: OpenAI ``file-`` + 22 base62, Azure ``file-`` + 32 hex."""
    if flavor == "azure":
        return "file-" + uuid.uuid4().hex
    return "file-" + _base62(22)


def output_file_id(flavor: str) -> str:
    """A batch-generated file: Azure uses ``file-`` + a dashed UUID."""
    if flavor == "azure":
        return f"file-{uuid.uuid4()}"
    return "file-" + _base62(22)


def batch_id(flavor: str) -> str:
    """OpenAI ``batch_`` + 32 hex; Azure ``batch_`` + a dashed UUID."""
    if flavor == "azure":
        return f"batch_{uuid.uuid4()}"
    return "batch_" + uuid.uuid4().hex


def request_id(flavor: str) -> str:
    """The request id of an HTTP call or of one batched request."""
    if flavor == "azure":
        return str(uuid.uuid4())
    if flavor == "anthropic":
        return "req_011" + _base62(21)
    return "req_" + os.urandom(16).hex()


def batch_request_id() -> str:
    """The ``id`` of an OpenAI output line (Azure lines have none)."""
    return "batch_req_" + os.urandom(16).hex()


def prefixed_hex(prefix: str, length: int = 24) -> str:
    """Ids inside response bodies (``chatcmpl-``, ``resp_``, ``msg_``...)."""
    return prefix + secrets.token_hex(length // 2)


def message_batch_id() -> str:
    """An Anthropic Message Batch: ``msgbatch_011`` + 21 base62."""
    return "msgbatch_011" + _base62(21)


def message_id() -> str:
    """An Anthropic Message inside a result line."""
    return "msg_011" + _base62(21)


def tool_use_id() -> str:
    """A ``tool_use`` content block."""
    return "toolu_011" + _base62(21)
