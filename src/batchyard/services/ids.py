"""Object ids in the providers' shapes (``file-...``, ``batch_...``) plus our part ids."""

from __future__ import annotations

import hashlib
import uuid


def new_file_id() -> str:
    """A new OpenAI-shaped file id."""
    return f"file-{uuid.uuid4().hex[:24]}"


def new_batch_id() -> str:
    """A new OpenAI-shaped batch id."""
    return f"batch_{uuid.uuid4().hex[:24]}"


def new_part_id() -> str:
    """A new part id (also the name of the part's upload: ``<part_id>.jsonl``)."""
    return f"part_{uuid.uuid4().hex[:24]}"


def result_file_id(batch_id: str, kind: str) -> str:
    """The stable id of a batch's output or error file (finalize may run twice)."""
    return "file-" + hashlib.sha256(f"{batch_id}:{kind}".encode()).hexdigest()[:24]
