"""Request input that every database can store: JSON bodies, query strings, filenames.

PostgreSQL refuses the NUL character in text and JSON columns; a request carrying one is the
client's mistake and gets a 400 (a 404 for a path, where no object can have such an id)
before anything reaches a service. Uploaded file names are reduced to a safe base name.
"""

from __future__ import annotations

import unicodedata
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError

#: Longest stored file name (characters); longer names keep their end (the extension).
MAX_FILENAME_CHARS = 255
NUL = "\x00"


Loc = tuple[str | int, ...]


def unstorable_location(value: Any, loc: Loc = ()) -> Loc | None:
    """Where in a parsed JSON value a NUL character sits (a key or a string), else None."""
    if isinstance(value, str):
        return loc if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if NUL in key:
                return (*loc, key)
            found = unstorable_location(item, (*loc, key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = unstorable_location(item, (*loc, index))
            if found is not None:
                return found
    return None


def _nul_error(loc: Loc) -> RequestValidationError:
    printable = tuple(str(p).replace(NUL, "\\u0000") for p in loc)
    return RequestValidationError([{"type": "string_unstorable", "loc": ("body", *printable),
                                    "msg": "must not contain the NUL character (\\u0000)"}])


def load_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object; a validation error (400) for anything else or a NUL."""
    try:
        data = orjson.loads(raw or b"null")
    except orjson.JSONDecodeError:
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body",),
                                       "msg": "invalid JSON"}]) from None
    if not isinstance(data, dict):
        raise RequestValidationError([{"type": "json_type", "loc": ("body",),
                                       "msg": "expected an object"}])
    if (loc := unstorable_location(data)) is not None:
        raise _nul_error(loc)
    return data


async def storable_json(request: Request) -> None:
    """A route dependency: 400 when the JSON body holds a NUL (FastAPI parses it itself)."""
    try:
        data = orjson.loads(await request.body() or b"null")
    except orjson.JSONDecodeError:
        return  # FastAPI answers the parse error
    if (loc := unstorable_location(data)) is not None:
        raise _nul_error(loc)


def query_with_nul(query_string: bytes) -> str | None:
    """The name of the first query parameter whose name or value holds a NUL, else None."""
    lowered = query_string.lower()
    if b"%00" not in lowered and b"\x00" not in lowered:
        return None  # the common case costs two byte scans
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True,
                                 encoding="utf-8", errors="replace"):
        if NUL in name or NUL in value:
            return name.replace(NUL, "\\u0000")
    return None


def safe_filename(raw: str, default: str = "upload.jsonl") -> str:
    """A base name: no directories (``/`` or ``\\``), no control characters, bounded length."""
    base = raw.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    if cleaned in ("", ".", ".."):
        return default
    return cleaned[-MAX_FILENAME_CHARS:]
