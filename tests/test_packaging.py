"""`pip install .` (not editable) into a fresh virtualenv ships the low-level API."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from .conftest import ROOT

SNIPPET = textwrap.dedent(
    """
    import json, sys
    import tracengent_api as api
    from tracengent_api.contract import EXCHANGES

    assert "site-packages" in api.__file__, api.__file__
    request = api.build_authorize(
        api.AuthorizeRequest(permission="payments:refund", context={"amount": 280}),
        base_url="http://localhost:8080",
        bearer_token="tok",
    )
    fixture = EXCHANGES["authorize"].request
    expected = json.dumps(fixture, separators=(",", ":"), ensure_ascii=False).encode()
    assert request.content == expected, (request.content, expected)
    print("ok", request.method, request.url)
    """
)


def test_the_wheel_installs_and_builds_the_fixture_authorize_request(tmp_path: Path) -> None:
    def run(*cmd: str, cwd: Path = tmp_path) -> str:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "-w",
        str(tmp_path / "dist"),
        str(ROOT),
    )
    wheels = list((tmp_path / "dist").glob("tracengent-*.whl"))
    assert len(wheels) == 1
    run(sys.executable, "-m", "venv", str(tmp_path / "venv"))
    python = str(tmp_path / "venv" / "bin" / "python")
    run(python, "-m", "pip", "install", "-q", str(wheels[0]))
    out = run(python, "-c", SNIPPET)
    assert out.strip() == "ok POST http://localhost:8080/v1/authorize"
