"""Check the wire contract's exchanges against openapi.yaml before anything is generated.

The contract is the truth: if an example no longer fits the schema, the schema (or the example)
drifted, and generating code from the schema would bake the drift into the SDK. So codegen stops
and names the exchange, the field and what the schema expected.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from ._spec import FORM, JSON, Operation, Spec, resolve

SENTINELS = {"<id>": "id", "<ts>": "timestamp", "<jwt>": "token"}
"""Fixture placeholders for volatile values, and the `x-volatile` mark each one may stand in."""

_BASE_URI = "urn:tracengent:openapi"


class ContractDriftError(Exception):
    """wire_contract.json and openapi.yaml disagree; `problems` holds one line per mismatch."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Exchange:
    name: str
    operation: Operation
    path_params: dict[str, str]
    raw: dict[str, Any]


def _type_or_sentinel(
    validator: Any, types: Any, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    """`type`, except that a sentinel is only accepted where the schema marks that kind."""
    if isinstance(instance, str) and instance in SENTINELS:
        kind = SENTINELS[instance]
        if schema.get("x-volatile") != kind:
            yield ValidationError(
                f"the sentinel {instance!r} stands for a volatile {kind}, "
                f"but the schema does not mark this field as one (x-volatile: {kind})"
            )
            return
    yield from Draft202012Validator.VALIDATORS["type"](validator, types, instance, schema)


_ContractValidator = jsonschema.validators.extend(Draft202012Validator, {"type": _type_or_sentinel})


def _field(error: ValidationError) -> str:
    parts = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        parts += [k for k in error.validator_value if k not in error.instance][:1]
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
    return text or "(the whole body)"


def _describe(error: ValidationError) -> str:
    if error.validator == "required":
        return "is required by the schema but missing"
    if isinstance(error.instance, str) and error.instance in SENTINELS:
        return str(error.message)
    if error.validator == "anyOf":
        expected = [
            s.get("type") or str(s.get("$ref", "?")).rsplit("/", 1)[-1]
            for s in error.validator_value
        ]
        return f"expected one of {expected}, found {error.instance!r}"
    if error.validator == "type":
        return f"expected {error.validator_value}, found {error.instance!r}"
    if error.validator == "enum":
        return f"expected one of {error.validator_value}, found {error.instance!r}"
    return str(error.message)


class ContractValidator:
    def __init__(self, spec: Spec) -> None:
        self._spec = spec
        resource = Resource.from_contents(spec.document, default_specification=DRAFT202012)
        self._registry: Registry[Any] = Registry().with_resource(_BASE_URI, resource)

    def _check(self, pointer: str, instance: Any, label: str) -> list[str]:
        validator = _ContractValidator({"$ref": f"{_BASE_URI}#{pointer}"}, registry=self._registry)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        return [f"{label} field '{_field(e)}': {_describe(e)}" for e in errors]

    def exchanges(self, contract: dict[str, Any]) -> list[Exchange]:
        """Every exchange of the contract, matched to its operation; raises on any drift."""
        problems: list[str] = []
        found: list[Exchange] = []
        for name, raw in contract.items():
            if name.startswith("_"):
                continue
            where = f"exchange '{name}'"
            if not isinstance(raw, dict) or "method" not in raw or "path" not in raw:
                problems.append(f"{where}: needs a method and a path")
                continue
            op = self._spec.operation_for(raw["method"], raw["path"])
            if op is None:
                problems.append(
                    f"{where}: {raw['method']} {raw['path']} is not an operation in openapi.yaml"
                )
                continue
            exchange_problems = self._check_exchange(op, raw)
            problems += [f"{where}: {p}" for p in exchange_problems]
            if not exchange_problems:
                found.append(Exchange(name, op, _path_params(op, raw["path"]), raw))
        if problems:
            raise ContractDriftError(problems)
        return found

    def _check_exchange(self, op: Operation, raw: dict[str, Any]) -> list[str]:
        problems: list[str] = []
        escaped = op.path.replace("~", "~0").replace("/", "~1")
        operation = f"/paths/{escaped}/{op.method.lower()}"

        for key, media in (("request", JSON), ("request_form", FORM)):
            if key not in raw:
                continue
            if op.request_media != media:
                problems.append(f"'{key}' given, but the operation takes {op.request_media}")
                continue
            media_escaped = media.replace("/", "~1")
            pointer = f"{operation}/requestBody/content/{media_escaped}/schema"
            problems += self._check(pointer, raw[key], key)
        if op.request_media and "request" not in raw and "request_form" not in raw:
            problems.append("the operation takes a body but the exchange shows none")

        if "response" in raw:
            if op.response_model is None:
                problems.append("'response' given, but the operation answers without a body")
            else:
                pointer = (
                    f"{operation}/responses/{op.success_status}/content/application~1json/schema"
                )
                problems += self._check(pointer, raw["response"], "response")

        declared = self._spec.document["paths"][op.path][op.method.lower()].get("parameters", [])
        for param, value in _path_params(op, raw["path"]).items():
            index = next(
                i
                for i, p in enumerate(declared)
                if resolve(self._spec.document, p)["name"] == param
            )
            pointer = f"{operation}/parameters/{index}/schema"
            problems += self._check(pointer, value, f"path parameter '{param}'")
        return problems


def _path_params(op: Operation, path: str) -> dict[str, str]:
    match = op.path_regex.match(path)
    return dict(match.groupdict()) if match else {}
