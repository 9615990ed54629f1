"""Identifier shapes as each provider mints them (file-, batch_, msgbatch_ and Azure forms).

None of these ids is a secret, so they come from one fast pseudo-random generator seeded
from the OS (and re-seeded in a forked child, so two processes never share a sequence);
minting one costs well under a microsecond instead of a ``getrandom`` call or 21
``secrets.choice`` calls, which matters at a million ids per run.
"""

from __future__ import annotations

import os
import random
import string
import uuid

_BASE62 = string.digits + string.ascii_letters
_rng = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _rng.seed(os.urandom(32)))


def _base62(length: int) -> str:
    return "".join(_rng.choices(_BASE62, k=length))


def _hex(length: int) -> str:
    """``length`` random lowercase hex digits."""
    # "%" is 3x faster than the f-string "{n:0{length}x}" (its format spec is parsed each time)
    return "%0*x" % (length, _rng.getrandbits(4 * length))  # noqa: UP031


def _uuid4() -> uuid.UUID:
    """A version-4 UUID from the fast generator (same shape as ``uuid.uuid4()``)."""
    return uuid.UUID(int=_rng.getrandbits(128), version=4)


def upload_file_id(flavor: str) -> str:
    """An uploaded file: OpenAI ``file-`` + 22 base62, Azure ``file-`` + 32 hex."""
    if flavor == "azure":
        return "file-" + _uuid4().hex
    return "file-" + _base62(22)


def output_file_id(flavor: str) -> str:
    """A batch-generated file: Azure uses ``file-`` + a dashed UUID."""
    if flavor == "azure":
        return f"file-{_uuid4()}"
    return "file-" + _base62(22)


def batch_id(flavor: str) -> str:
    """OpenAI ``batch_`` + 32 hex; Azure ``batch_`` + a dashed UUID."""
    if flavor == "azure":
        return f"batch_{_uuid4()}"
    return "batch_" + _uuid4().hex


def request_id(flavor: str) -> str:
    """The request id of an HTTP call or of one batched request."""
    if flavor == "azure":
        return str(_uuid4())
    if flavor == "anthropic":
        return "req_011" + _base62(21)
    return "req_" + _hex(32)


def batch_request_id() -> str:
    """The ``id`` of an OpenAI output line (Azure lines have none)."""
    return "batch_req_" + _hex(32)


def prefixed_hex(prefix: str, length: int = 24) -> str:
    """Ids inside response bodies (``chatcmpl-``, ``resp_``, ``msg_``...)."""
    return prefix + _hex(length // 2 * 2)


def message_batch_id() -> str:
    """An Anthropic Message Batch: ``msgbatch_011`` + 21 base62."""
    return "msgbatch_011" + _base62(21)


def message_id() -> str:
    """An Anthropic Message inside a result line."""
    return "msg_011" + _base62(21)


def tool_use_id() -> str:
    """A ``tool_use`` content block."""
    return "toolu_011" + _base62(21)
