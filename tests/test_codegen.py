"""Codegen refuses drift, writes nothing on failure, and `--check` catches stale output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT


def codegen(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "codegen", "--root", str(root), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def snapshot_tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A throwaway project root with the real schema and the committed generated package."""
    shutil.copytree(ROOT / "schema", tmp_path / "schema")
    shutil.copytree(
        ROOT / "generated", tmp_path / "generated", ignore=shutil.ignore_patterns("__pycache__")
    )
    return tmp_path


def test_regenerating_the_committed_schema_changes_nothing(copy: Path) -> None:
    before = snapshot_tree(copy / "generated" / "tracengent_api")
    result = codegen(copy)
    assert result.returncode == 0, result.stderr
    assert "0 file(s) changed" in result.stdout
    assert snapshot_tree(copy / "generated" / "tracengent_api") == before


def test_an_example_that_breaks_the_schema_fails_generation_and_writes_nothing(copy: Path) -> None:
    contract_path = copy / "schema" / "wire_contract.json"
    contract = json.loads(contract_path.read_text())
    contract["authorize"]["request"]["context"]["amount"] = "a lot"
    contract["attenuate"]["request"].pop("grantedToAgentId")
    contract["ingest_events"]["request"][0]["name"] = "<ts>"
    contract_path.write_text(json.dumps(contract))
    before = snapshot_tree(copy / "generated" / "tracengent_api")

    result = codegen(copy)

    assert result.returncode == 1
    assert "nothing was written" in result.stderr
    assert (
        "exchange 'authorize': request field 'context.amount': "
        "expected one of ['integer', 'number'], found 'a lot'"
    ) in result.stderr
    assert (
        "exchange 'attenuate': request field 'grantedToAgentId': is required by the schema but missing"
        in result.stderr
    )
    assert (
        "exchange 'ingest_events': request field '[0].name': the sentinel '<ts>'" in result.stderr
    )
    assert snapshot_tree(copy / "generated" / "tracengent_api") == before


def test_an_exchange_with_no_operation_is_drift(copy: Path) -> None:
    contract_path = copy / "schema" / "wire_contract.json"
    contract = json.loads(contract_path.read_text())
    contract["trace_close"]["path"] = "/v1/ingest/trace"
    contract_path.write_text(json.dumps(contract))
    result = codegen(copy)
    assert result.returncode == 1
    assert "exchange 'trace_close': POST /v1/ingest/trace is not an operation" in result.stderr


def test_check_catches_a_hand_edit(copy: Path) -> None:
    operations = copy / "generated" / "tracengent_api" / "operations.py"
    edited = operations.read_text().replace('_JSON = "application/json"', '_JSON = "text/json"')
    assert edited != operations.read_text()
    operations.write_text(edited)
    result = codegen(copy, "--check")
    assert result.returncode == 1
    assert "operations.py" in result.stderr
    assert "Run `make generate`" in result.stderr


def test_a_renamed_field_is_caught_by_check_and_then_by_conformance(copy: Path) -> None:
    """The contract wins: renaming a field in openapi.yaml cannot slip through."""
    openapi = copy / "schema" / "openapi.yaml"
    openapi.write_text(openapi.read_text().replace("redactFields:", "redactedFields:"))

    stale = codegen(copy, "--check")
    assert stale.returncode == 1
    assert "models.py" in stale.stderr

    assert codegen(copy).returncode == 0
    assert "redactedFields" in (copy / "generated" / "tracengent_api" / "models.py").read_text()
    conformance = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_conformance.py",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(copy / "generated")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert conformance.returncode == 1, conformance.stdout
    assert "test_response_parses_into_its_model_and_loses_nothing[authorize]" in conformance.stdout
