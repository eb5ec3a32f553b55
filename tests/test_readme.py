"""The README's integration snippets run as written (each in a fresh interpreter)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def snippet(section: str) -> str:
    """The first ```python block under the README heading `## {section}`."""
    text = README.read_text(encoding="utf-8")
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", body, re.DOTALL)
    assert match, f"no python snippet in the README section {section!r}"
    return match.group(1)


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRACENGENT_DATA": ":memory:", "HOME": str(cwd)}
    env.pop("TRACENGENT_URL", None)
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_opentelemetry_snippet_prints_the_genai_spans(tmp_path: Path) -> None:
    (tmp_path / "otel_snippet.py").write_text(snippet("OpenTelemetry"))
    result = run([sys.executable, "otel_snippet.py"], tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("invoke_agent demo-agent", "execute_tool search_flights", "chat gpt-4o"):
        assert f'"name": "{name}"' in result.stdout, name
    assert '"name": "tracengent.decision"' in result.stdout


def test_the_mcp_snippet_calls_the_allowed_tool_and_is_refused_the_other(tmp_path: Path) -> None:
    (tmp_path / "mcp_snippet.py").write_text(snippet("MCP"))
    result = run([sys.executable, "mcp_snippet.py"], tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "3 flights to LIS"
    assert lines[1].startswith("denied: ") and "delete_account" in lines[1]


def test_the_pytest_snippet_passes_under_pytest(tmp_path: Path) -> None:
    from tracengent.platform import DEFAULT_POLICY_TOML

    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "strict.toml").write_text(DEFAULT_POLICY_TOML)
    (tmp_path / "test_agent.py").write_text(snippet("Testing with pytest"))
    result = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
