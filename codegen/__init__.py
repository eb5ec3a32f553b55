"""Turns schema/openapi.yaml and schema/wire_contract.json into the `tracengent_api` package.

Run it with `make generate` (`python -m codegen`); `python -m codegen --check` verifies that
`generated/` is exactly what the schema and the templates produce.
"""
