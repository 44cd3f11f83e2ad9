"""The multiprocess directory `shoal serve` prepares for its workers, as an
operator sees it. (What is counted: tests/http/test_metrics.py; a real
`shoal serve --workers 2`: tests/cli/test_metrics.py.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shoal.metrics import MULTIPROCESS_VARIABLE, prepare_multiprocess_dir


def test_the_operators_directory_is_emptied_of_metric_files_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_123.db").write_bytes(b"old counts")
    (directory / "gauge_livesum_123.db").write_bytes(b"old gauge")
    (directory / "README").write_text("kept", encoding="utf-8")
    monkeypatch.setenv(MULTIPROCESS_VARIABLE, str(directory))

    assert prepare_multiprocess_dir() == directory
    assert sorted(path.name for path in directory.iterdir()) == ["README"]
    assert os.environ[MULTIPROCESS_VARIABLE] == str(directory)


def test_a_missing_directory_is_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "not" / "yet"
    monkeypatch.setenv(MULTIPROCESS_VARIABLE, str(directory))
    assert prepare_multiprocess_dir() == directory
    assert directory.is_dir()


def test_without_one_a_temporary_directory_is_made_and_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Set, then unset: the variable prepare sets is removed again after the test.
    monkeypatch.setenv(MULTIPROCESS_VARIABLE, "unset below")
    monkeypatch.delenv(MULTIPROCESS_VARIABLE)
    directory = prepare_multiprocess_dir()
    try:
        assert directory.is_dir()
        assert directory.name.startswith("shoal-metrics-")
        assert os.environ[MULTIPROCESS_VARIABLE] == str(directory)
    finally:
        directory.rmdir()
