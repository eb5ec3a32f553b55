"""The pytest plugin behind `tracengent.testing` (entry point `pytest11: tracengent`).

Installing tracengent loads this module into every pytest session of every project, most of
which never use these fixtures. So it imports nothing but pytest at load time: the platform, the
clients and the recorder are imported inside the fixtures, and a missing `testing` extra fails
only the tests that ask for a fixture, saying how to install it.

`async_tracengent_client` is a plain (sync) fixture on purpose. An async fixture only runs under
a plugin that claims it (`pytest_asyncio.fixture` in strict mode, anyio's plugin for anyio
tests), and no single decorator suits both. The client needs no running loop to be built, and
its teardown closes it on a private loop in a worker thread, so the same fixture serves
pytest-asyncio (auto and strict mode), anyio's plugin (asyncio backend), and a plain
`asyncio.run` alike.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tracengent import AsyncTracengentClient, TracengentClient

    from ._platform import PolicySource
    from ._recorder import PlatformRecorder

MARKER = "tracengent_policy"
_MARKER_HELP = (
    f"{MARKER}(toml=None, *, path=None): the policy of the tracengent_platform fixture, as "
    "TOML text or a file (relative to the test file); it wins over the tracengent_policy fixture"
)
_MISSING_EXTRA = (
    'the tracengent fixtures need the local platform: pip install "tracengent[testing]" ({error})'
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _MARKER_HELP)


def _recorder_class() -> type[PlatformRecorder]:
    # pytest.fail() is called outside the `except`: a chained "during handling of the above
    # exception" would bury the one line that says what to do.
    try:
        importlib.import_module("tracengent.platform")  # the extra's dependencies, checked first
        from ._recorder import PlatformRecorder
    except ImportError as error:
        missing = str(error)
    else:
        return PlatformRecorder
    pytest.fail(_MISSING_EXTRA.format(error=missing), pytrace=False)


def _marker_policy(request: pytest.FixtureRequest, default: PolicySource) -> PolicySource:
    marker = request.node.get_closest_marker(MARKER)
    if marker is None:
        return default
    toml = marker.args[0] if marker.args else marker.kwargs.get("toml")
    path = marker.kwargs.get("path")
    unknown = set(marker.kwargs) - {"toml", "path"}
    if len(marker.args) > 1 or unknown or (toml is None) == (path is None):
        pytest.fail(
            f"@pytest.mark.{MARKER} takes the policy's TOML text or path=<file>, one of the two; "
            f"got args={marker.args!r} kwargs={marker.kwargs!r}",
            pytrace=False,
        )
    if path is not None:
        return Path(path)
    if isinstance(toml, str | os.PathLike):
        return toml
    pytest.fail(f"@pytest.mark.{MARKER}: the policy must be TOML text, not {toml!r}", pytrace=False)


@pytest.fixture
def tracengent_policy() -> PolicySource:
    """The policy of `tracengent_platform`: None (the built-in one), TOML text, a file path
    (a `pathlib.Path`, relative to the test file) or a `Policy`. Override it in a conftest or
    module to share a policy; a `tracengent_policy` marker on a test still wins."""
    return None


@pytest.fixture
def tracengent_platform(
    request: pytest.FixtureRequest, tracengent_policy: PolicySource
) -> Iterator[PlatformRecorder]:
    """A fresh in-memory local platform, installed as the process-wide embedded one for the
    test (`TracengentOptions.local()` clients reach it) and removed after it."""
    recorder_class = _recorder_class()
    from tracengent.platform import PolicyError

    source = _marker_policy(request, tracengent_policy)
    try:
        recorder = recorder_class(source, base_dir=request.path.parent)
    except (PolicyError, TypeError) as error:
        problem = str(error)
    else:
        with recorder:
            yield recorder
        return
    pytest.fail(f"{MARKER}: {problem}", pytrace=False)


@pytest.fixture
def tracengent_client(tracengent_platform: PlatformRecorder) -> TracengentClient:
    """A `TracengentClient` of `tracengent_platform`, signed in as the policy's first agent;
    closed after the test."""
    return tracengent_platform.client()


@pytest.fixture
def async_tracengent_client(tracengent_platform: PlatformRecorder) -> AsyncTracengentClient:
    """An `AsyncTracengentClient` of `tracengent_platform`; closed after the test. A plain
    fixture: it works under pytest-asyncio (any mode) and anyio's plugin (asyncio backend)."""
    return tracengent_platform.async_client()
