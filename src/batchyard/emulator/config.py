"""Emulator settings: which provider to imitate, how fast, and which faults to inject.

Everything is a plain pydantic model so the same knobs come from Python
(``EmulatorConfig(...)``), from CLI flags and from the ``POST /_emulator/faults`` admin route.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Flavor = Literal["openai", "azure", "anthropic"]

MB = 1024 * 1024


class FaultKnobs(BaseModel):
    """Faults the emulator injects; all off by default.

    Call-level faults (429, 500, drop, slow) count down per HTTP call that matches the
    optional ``fault_path`` (substring of the URL path) and ``fault_method`` filters, so a
    test can aim at one pipeline step (e.g. only ``POST`` to ``/batches``).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    rate_limit_next: int = Field(default=0, ge=0, description="Next N calls answer 429.")
    retry_after: float = Field(
        default=1.0, ge=0, description="Retry-After seconds sent with a 429."
    )
    server_error_next: int = Field(default=0, ge=0, description="Next N calls answer 500.")
    overloaded_next: int = Field(
        default=0, ge=0,
        description="Next N calls answer 529 overloaded (Anthropic; 503 on OpenAI/Azure), "
                    "with Retry-After.",
    )
    drop_next: int = Field(default=0, ge=0, description="Next N calls lose their connection.")
    drop_after_handling: bool = Field(
        default=False, description="Drop the response after the call took effect (else before)."
    )
    slow_next: int = Field(default=0, ge=0, description="Next N calls are delayed by slow_delay.")
    slow_delay: float = Field(default=0.0, ge=0, description="Delay (s) for slow calls.")
    list_lag: float = Field(
        default=0.0, ge=0,
        description="Seconds before a new batch or upload shows in list answers.",
    )
    fault_path: str | None = Field(default=None, description="Only calls whose path contains this.")
    fault_method: str | None = Field(default=None, description="Only calls with this HTTP method.")
    request_failure_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Fraction of request lines that fail (by custom_id hash).",
    )
    request_failure_status: int = Field(default=500, ge=400, le=599)
    enqueued_token_quota: int | None = Field(
        default=None,
        ge=0,
        description="Enqueued-token quota per model/deployment (None: unlimited).",
    )
    no_output_file_next: int = Field(
        default=0, ge=0, description="Next N batches complete without an output file."
    )
    not_found_after_create: int = Field(
        default=0, ge=0, description="Each new batch answers 404 to its first N retrieves."
    )
    fail_validation_next: int = Field(
        default=0, ge=0, description="Next N batches fail validation."
    )
    fail_validation_code: str = "invalid_request"


class EmulatorConfig(FaultKnobs):
    """Everything the emulator can be told at start-up.

    Speeds are in seconds (a real batch takes hours; here it takes what you configure).
    The fault knobs inherited from :class:`FaultKnobs` are the initial fault state;
    ``Emulator.reset()`` returns to them.
    """

    flavor: Flavor = "openai"
    api_keys: tuple[str, ...] = Field(
        default=(), description="Accepted API keys; empty means any (or no) key is accepted."
    )
    validation_delay: float = Field(default=0.2, ge=0, description="Seconds spent in validating.")
    request_latency: float = Field(default=0.0, ge=0, description="Seconds per request line.")
    finalize_delay: float = Field(default=0.2, ge=0, description="Seconds spent in finalizing.")
    cancel_grace: float = Field(default=0.2, ge=0, description="Seconds spent in cancelling.")
    running_batches: int | None = Field(
        default=None,
        gt=0,
        description="Batches worked on at once, taken in arrival order (the others wait in "
                    "validating, as on a busy provider); None: every batch at once.",
    )
    completion_window: float = Field(
        default=86400.0,
        gt=0,
        description="Seconds until an OpenAI or Anthropic batch expires (Azure never does).",
    )
    max_file_bytes: int = Field(default=200 * MB, gt=0)
    max_requests: int | None = Field(
        default=None,
        gt=0,
        description="Requests per batch; None: 50,000 (OpenAI) / 100,000 (Azure, Anthropic).",
    )
    max_batch_bytes: int = Field(
        default=256 * MB, gt=0, description="Anthropic: largest accepted create body."
    )
    known_models: tuple[str, ...] = Field(
        default=(),
        description="Known models / deployments; empty accepts any (no model_not_found).",
    )
    azure_fail_fast_quota: bool = Field(
        default=False, description="Azure: refuse POST /batches with 400 when the quota is full."
    )
    embedding_dimensions: int = Field(default=16, gt=0, le=4096)
    data_dir: str | None = Field(
        default=None, description="Where file bytes go (default: a temp dir)."
    )

    def request_limit(self) -> int:
        """The per-batch request limit, defaulting by flavor."""
        if self.max_requests is not None:
            return self.max_requests
        return 50_000 if self.flavor == "openai" else 100_000

    def initial_faults(self) -> FaultKnobs:
        """The fault knobs as configured at start."""
        return FaultKnobs(**{name: getattr(self, name) for name in FaultKnobs.model_fields})
