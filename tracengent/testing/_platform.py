"""The policy a test's platform decides with, from whatever the test names it by."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import TypeAlias

from tracengent.platform import Policy, default_policy, load_policy, parse_policy

#: What chooses a test's policy: None (the built-in one), TOML text, a policy file, or a Policy.
PolicySource: TypeAlias = str | os.PathLike[str] | Policy | None


def resolve_policy(source: PolicySource, base_dir: Path | None = None) -> Policy:
    """The `Policy` a source names; a relative file path is taken from `base_dir` (the test's).

    Raises `PolicyError` (every problem listed) for a policy that cannot be used.
    """
    if source is None:
        return default_policy()
    if isinstance(source, Policy):
        return source
    if isinstance(source, str):
        if "\n" not in source and "=" not in source and source.strip().endswith(".toml"):
            raise TypeError(
                f"{source!r} looks like a file name, but a str is the policy's TOML text: "
                "pass a pathlib.Path, or path=... to the tracengent_policy marker"
            )
        return parse_policy(textwrap.dedent(source), "<inline tracengent_policy>")
    if isinstance(source, os.PathLike):
        path = Path(source)
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        return load_policy(path)
    raise TypeError(
        f"a tracengent policy is TOML text, a path, a Policy or None, not {type(source).__name__}"
    )
