"""`python -m codegen [--check]`: regenerate `generated/tracengent_api`, or verify it is fresh."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from ._pipeline import Paths, build, stale, write
from ._spec import SpecError
from ._validate import ContractDriftError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codegen", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument(
        "--check", action="store_true", help="write nothing; fail if generated/ is not up to date"
    )
    args = parser.parse_args(argv)
    paths = Paths(args.root)
    try:
        files = build(paths)
    except ContractDriftError as drift:
        print(
            "codegen: wire_contract.json does not fit openapi.yaml; nothing was written.",
            file=sys.stderr,
        )
        for problem in drift.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    except (SpecError, RuntimeError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", None) or ""
        print(f"codegen: {error}\n{detail}".rstrip(), file=sys.stderr)
        return 1
    if args.check:
        outdated = stale(paths, files)
        if outdated:
            print(
                "codegen: generated/ is not what the schema and templates produce "
                f"(hand-edited, or not regenerated): {', '.join(outdated)}. Run `make generate`.",
                file=sys.stderr,
            )
            return 1
        print("codegen: generated/ is up to date")
        return 0
    changed = write(paths, files)
    print(
        f"codegen: {len(changed)} file(s) changed" + (f": {', '.join(changed)}" if changed else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
