"""The Tracengent SDK benchmarks: `python -m bench` (see `bench/__main__.py` and RESULTS.md).

Not part of the package: nothing here is installed or imported by `tracengent`.
"""
