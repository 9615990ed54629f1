"""CLI commands given a batch id that does not exist say so and exit non-zero."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from batchyard.cli import app


@pytest.mark.parametrize("command", [["results", "batch_nope", "-o", "out.csv"],
                                     ["status", "batch_nope"]])
def test_an_unknown_batch_is_a_clear_error(tmp_path: Path, command: list[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"BATCHYARD_DATA_DIR": str(tmp_path / "data")}
    assert CliRunner().invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    result = CliRunner().invoke(app, command, env=env)
    assert result.exit_code == 1
    assert "No such Batch object: batch_nope" in result.output
    assert not (tmp_path / "out.csv").exists()
