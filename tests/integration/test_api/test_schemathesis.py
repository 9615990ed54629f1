"""Schemathesis (``--checks all``) against ``batchyard serve``'s app on a real port and
PostgreSQL: the served OpenAPI document must describe what the API does.

Deterministic (fixed seed, deterministic generation, bounded examples), a couple of minutes at
most. Exclusions, each with its reason:

- ``/health/deployments`` calls every configured provider; there are none here, and the
  answer (an empty list) says nothing about the API.
- "Schema-valid data is accepted" (positive_data_acceptance) is not checked for two
  operations whose validity no JSON Schema can state: ``POST /v1/files`` (a ``batch`` upload
  must be a ``.jsonl`` file of valid request lines) and ``POST /v1/schedules`` (a cron
  expression and an IANA time zone). Every other check runs on them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from batchyard.api.app import create_app
from batchyard.config import Settings
from batchyard.services.container import build_services
from tests.e2e.helpers import Nudges
from tests.integration.test_api.conftest import MASTER, ApiServer

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

EXCLUDED_PATHS = ["/health/deployments"]
CONFIG = """
# Every check (Schemathesis runs all of them unless told otherwise, like --checks all;
# given here rather than on the command line so the two exceptions below can apply).
[checks]
enabled = true

[[operations]]
include-path = "/v1/files"
include-method = "POST"
checks.positive_data_acceptance.enabled = false

[[operations]]
include-path = "/v1/schedules"
include-method = "POST"
checks.positive_data_acceptance.enabled = false
"""


def schemathesis_command() -> list[str]:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("schemathesis is not installed (it is in the test extra)")
    return [found]


def test_the_openapi_document_tells_the_truth(make_settings: Callable[..., Settings],
                                              tmp_path: Path) -> None:
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    settings = make_settings()
    services = build_services(settings, nudge=Nudges())
    try:
        with ApiServer(create_app(settings, services)) as server:
            command = [
                *schemathesis_command(), "run", f"{server.base_url}/openapi.json",
                "--seed", "20261130", "--generation-deterministic",
                "--max-examples", "25", "--workers", "1", "--request-timeout", "20",
                "--max-time", "100", "--no-color",
                "-H", f"Authorization: Bearer {MASTER}",
                *(arg for path in EXCLUDED_PATHS for arg in ("--exclude-path", path)),
            ]
            result = subprocess.run(command, capture_output=True, text=True, timeout=240,
                                    cwd=tmp_path, env={**os.environ, "NO_COLOR": "1"},
                                    check=False)
    finally:
        services.close()
    (Path(os.environ.get("BY_ST_OUT", tmp_path)) / "schemathesis.txt").write_text(result.stdout)
    assert result.returncode == 0, result.stdout[-15000:] + result.stderr[-3000:]
