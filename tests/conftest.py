"""Shared fixtures. Snapshots live in the top-level `snapshots/` folder, one folder per module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode
from syrupy.location import PyTestLocation

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOTS = ROOT / "snapshots"


class _TopLevelSnapshot(SingleFileSnapshotExtension):
    """A single-file snapshot under snapshots/<test module>/, bytes written unchanged."""

    _write_mode = WriteMode.BINARY

    @classmethod
    def dirname(cls, *, test_location: PyTestLocation) -> str:
        return str(SNAPSHOTS / Path(test_location.filepath).stem)

    @classmethod
    def discovery_dirname(cls, *, test_location: PyTestLocation) -> str:
        return cls.dirname(test_location=test_location)


class GeneratedFileSnapshot(_TopLevelSnapshot):
    file_extension = "snap"


class HttpRequestSnapshot(_TopLevelSnapshot):
    file_extension = "http"


@pytest.fixture
def file_snapshot(snapshot: SnapshotAssertion) -> Any:
    return snapshot.use_extension(GeneratedFileSnapshot)


@pytest.fixture
def http_snapshot(snapshot: SnapshotAssertion) -> Any:
    return snapshot.use_extension(HttpRequestSnapshot)
