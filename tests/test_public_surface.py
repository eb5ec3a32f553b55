"""The public surface: one list of names, one exception root whose exceptions carry their data."""

from __future__ import annotations

import ast
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import tracengent
from tracengent import (
    DelegationException,
    NotAuthorizedException,
    ToolDeniedException,
    ToolPendingApprovalException,
    TracengentClient,
    TracengentConfigError,
    TracengentError,
    TracengentOptions,
)

from ._served import Served, served_platform

INIT = Path(tracengent.__file__)


def type_checking_imports() -> dict[str, str]:
    """Name -> module of the imports under `if TYPE_CHECKING:` in tracengent/__init__.py."""
    tree = ast.parse(INIT.read_text())
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom)
                for alias in statement.names:
                    assert alias.asname == alias.name, f"{alias.name} is not re-exported as itself"
                    found[alias.name] = "." * statement.level + (statement.module or "")
    return found


def test_the_lazy_table_and_the_type_checking_imports_agree() -> None:
    assert type_checking_imports() == tracengent._EXPORTS


def test_every_public_name_resolves_and_is_listed_once() -> None:
    assert sorted(tracengent.__all__) == sorted({"__version__", *tracengent._EXPORTS})
    assert len(tracengent.__all__) == len(set(tracengent.__all__))
    for name in tracengent.__all__:
        assert getattr(tracengent, name) is not None
    assert dir(tracengent) == sorted(tracengent.__all__)


ERRORS = [
    NotAuthorizedException("payments:refund", "over the limit", status_code=403),
    ToolDeniedException("egress", "payments:refund", "egress_deny"),
    ToolPendingApprovalException("apr_1", "waiting"),
    DelegationException("widening", status_code=403),
    TracengentConfigError("agent_id is missing", "base_url is not a URL"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_every_sdk_exception_is_a_tracengent_error_with_its_data(error: Exception) -> None:
    assert isinstance(error, TracengentError)
    assert isinstance(error.reason, str) and error.reason
    copy = pickle.loads(pickle.dumps(error))  # process pools and task queues carry them
    assert type(copy) is type(error) and vars(copy) == vars(error) and str(copy) == str(error)


def test_the_01_base_classes_are_kept() -> None:
    assert issubclass(TracengentConfigError, ValueError)
    config = TracengentConfigError("a", "b")
    assert config.problems == ("a", "b") and "2 problems" in str(config)
    refused = NotAuthorizedException("payments:refund", "over the limit")
    assert (refused.permission, refused.reason, refused.status_code) == (
        "payments:refund",
        "over the limit",
        None,
    )
    assert str(refused) == "Not authorized for 'payments:refund': over the limit"


def test_bad_options_raise_the_root_too() -> None:
    with pytest.raises(TracengentError) as raised:
        TracengentOptions(agent_id="", base_url="nope", ingest_key="agk_x").validate()
    assert isinstance(raised.value, TracengentConfigError)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_platform(tmp_path_factory.mktemp("surface")) as platform:
        yield platform


def cli(served: Served, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tracengent.cli", *args, "--data", str(served.data)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


@pytest.mark.integration
def test_a_platform_refusal_carries_its_status_code(served: Served) -> None:
    token = cli(served, "grant", "demo-agent", "hotels:*", "--max-amount", "500")
    with TracengentClient(served.options()) as client:
        session = client.begin_delegated_task(token)
        cli(served, "revoke", session.grant_id or "")
        with pytest.raises(DelegationException) as refused:
            session.attenuate_for_call("agt_hotel", ["hotels:book"], max_amount=100)
    assert isinstance(refused.value, TracengentError)
    assert refused.value.status_code is not None and 400 <= refused.value.status_code < 500
    assert str(refused.value.status_code) in refused.value.reason
