"""batchyard: submit a JSONL of LLM requests, walk away, find every result in SQL."""

from __future__ import annotations

__version__ = "0.1.0"
