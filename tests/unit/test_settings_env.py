"""Child processes (the workers `up` and `demo` start) are rebuilt from settings_env."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchyard.cli.processes import settings_env
from batchyard.config import Settings


def test_the_store_and_its_secrets_reach_the_child(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = Settings(data_dir=tmp_path, storage_backend="s3",
                   s3={"bucket": "by-test", "endpoint_url": "http://127.0.0.1:9",
                       "access_key_id": "AKIDEXAMPLE", "secret_access_key": "s3cr3t"})
    env = settings_env(cfg)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    child = Settings()
    assert child.storage_backend == "s3"
    assert (child.s3.bucket, child.s3.endpoint_url) == ("by-test", "http://127.0.0.1:9")
    assert child.s3.secret_access_key is not None
    assert child.s3.secret_access_key.get_secret_value() == "s3cr3t"
    assert "**" not in "".join(env.values())
