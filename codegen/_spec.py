"""Read the OpenAPI document into the few facts the templates need.

The templates never walk raw OpenAPI: everything they render comes from the `Operation` records
built here, so a schema construct the generator does not understand fails loudly in one place
instead of rendering half a builder.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
_REF_PREFIX = "#/components/schemas/"


class SpecError(Exception):
    """openapi.yaml uses something codegen cannot turn into a builder."""


@dataclass(frozen=True)
class Param:
    wire_name: str
    py_name: str
    required: bool
    enum: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    op_id: str
    method: str
    path: str
    summary: str
    description: str
    path_params: tuple[Param, ...]
    header_params: tuple[Param, ...]
    security: tuple[str, ...]  # scheme names, any one of which authenticates
    request_media: str | None  # JSON or FORM
    request_model: str | None  # model class name
    request_is_array: bool
    response_model: str | None  # model of the 2xx answer; None when it has no body
    success_status: int
    builder: (
        bool  # False (`x-builder: false`) for what only the platform serves: a route, no builder
    )

    @property
    def path_regex(self) -> re.Pattern[str]:
        parts = re.split(r"\{([^}]+)\}", self.path)
        pattern = "".join(
            f"(?P<{part}>[^/]+)" if i % 2 else re.escape(part) for i, part in enumerate(parts)
        )
        return re.compile(f"^{pattern}$")

    @property
    def route_pattern(self) -> str:
        """The regex a server matches whole request paths with: each path parameter a group
        named by its snake_case name, so a match's groups are the handler's keyword arguments."""
        parts = re.split(r"\{([^}]+)\}", self.path)
        return "".join(
            f"(?P<{snake(part)}>[^/]+)" if i % 2 else re.escape(part)
            for i, part in enumerate(parts)
        )

    @property
    def uses_bearer(self) -> bool:
        return "bearerAuth" in self.security

    @property
    def uses_ingest_key(self) -> bool:
        return "ingestKey" in self.security

    @property
    def bearer_only(self) -> bool:
        return self.security == ("bearerAuth",)


@dataclass(frozen=True)
class ErrorClass:
    name: str
    status: str  # "401" or a range such as "4XX"
    description: str
    retryable: bool


@dataclass(frozen=True)
class Spec:
    document: dict[str, Any]
    operations: tuple[Operation, ...]
    errors: tuple[ErrorClass, ...]

    def operation_for(self, method: str, path: str) -> Operation | None:
        for op in self.operations:
            if op.method == method.upper() and op.path_regex.match(path):
                return op
        return None


def snake(name: str) -> str:
    """`grantId` → `grant_id`, `Content-Encoding` → `content_encoding`."""
    name = re.sub(r"[^0-9A-Za-z]+", "_", name)
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower().strip("_")


def load_yaml(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(loaded, dict):
        raise SpecError(f"{path}: expected a mapping at the top level")
    return loaded


def load_json(path: Path) -> dict[str, Any]:
    loaded = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(loaded, dict):
        raise SpecError(f"{path}: expected an object at the top level")
    return loaded


def resolve(document: dict[str, Any], node: Any) -> Any:
    """Follow local `$ref`s until a node that is not a reference."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise SpecError(f"only local references are supported, found {ref!r}")
        target: Any = document
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def _model_of(schema: dict[str, Any], where: str) -> tuple[str, bool]:
    if schema.get("type") == "array":
        name, nested = _model_of(schema.get("items", {}), where)
        if nested:
            raise SpecError(f"{where}: arrays of arrays are not supported")
        return name, True
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith(_REF_PREFIX):
        raise SpecError(
            f"{where}: a body must reference a component schema (or be an array of one)"
        )
    return ref[len(_REF_PREFIX) :], False


def _params(
    document: dict[str, Any], raw: list[Any], where: str
) -> tuple[list[Param], list[Param]]:
    path_params: list[Param] = []
    header_params: list[Param] = []
    for entry in raw:
        param = resolve(document, entry)
        schema = resolve(document, param.get("schema", {}))
        built = Param(
            wire_name=param["name"],
            py_name=snake(param["name"]),
            required=bool(param.get("required", False)),
            enum=tuple(str(v) for v in schema.get("enum", ())),
        )
        if param["in"] == "path":
            path_params.append(built)
        elif param["in"] == "header":
            header_params.append(built)
        else:
            raise SpecError(f"{where}: parameters in {param['in']!r} are not supported")
    return path_params, header_params


def _operation(document: dict[str, Any], path: str, method: str, raw: dict[str, Any]) -> Operation:
    where = f"{method.upper()} {path}"
    op_id = raw.get("operationId")
    if not isinstance(op_id, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", op_id):
        raise SpecError(f"{where}: operationId must be a snake_case name, found {op_id!r}")
    path_params, header_params = _params(document, raw.get("parameters", []), where)
    declared = {p.wire_name for p in path_params}
    in_path = set(re.findall(r"\{([^}]+)\}", path))
    if declared != in_path:
        raise SpecError(
            f"{where}: path parameters {sorted(in_path)} are declared as {sorted(declared)}"
        )

    security_raw = raw.get("security", document.get("security", []))
    security = tuple(name for requirement in security_raw for name in requirement)

    request_media = request_model = None
    request_is_array = False
    body = raw.get("requestBody")
    if body is not None:
        content = resolve(document, body)["content"]
        if len(content) != 1 or next(iter(content)) not in (JSON, FORM):
            raise SpecError(f"{where}: the request body must have exactly one of {JSON}, {FORM}")
        request_media = next(iter(content))
        request_model, request_is_array = _model_of(content[request_media]["schema"], where)

    success = sorted(code for code in raw["responses"] if str(code).startswith("2"))
    if len(success) != 1:
        raise SpecError(f"{where}: exactly one 2xx answer is supported, found {success}")
    answer = resolve(document, raw["responses"][success[0]])
    response_model = None
    if "content" in answer:
        response_model, is_array = _model_of(answer["content"][JSON]["schema"], where)
        if is_array:
            raise SpecError(f"{where}: array answers are not supported")

    return Operation(
        op_id=op_id,
        method=method.upper(),
        path=path,
        summary=str(raw.get("summary", "")).strip(),
        description=str(raw.get("description", "")).strip(),
        path_params=tuple(path_params),
        header_params=tuple(header_params),
        security=security,
        request_media=request_media,
        request_model=request_model,
        request_is_array=request_is_array,
        response_model=response_model,
        success_status=int(success[0]),
        builder=raw.get("x-builder", True) is not False,
    )


def _errors(document: dict[str, Any]) -> tuple[ErrorClass, ...]:
    """One exception class per reusable error answer, keyed by the status it is used for."""
    by_name: dict[str, ErrorClass] = {}
    for path, item in document["paths"].items():
        for method, raw in item.items():
            for status, answer in raw["responses"].items():
                if str(status).startswith("2"):
                    continue
                resolved = resolve(document, answer)
                name = resolved.get("x-error-class")
                if not isinstance(name, str):
                    raise SpecError(
                        f"{method.upper()} {path}: answer {status} names no x-error-class"
                    )
                found = ErrorClass(
                    name=name,
                    status=str(status),
                    description=str(resolved.get("description", "")).strip(),
                    retryable=bool(resolved.get("x-retryable", False)),
                )
                if by_name.setdefault(name, found) != found:
                    raise SpecError(f"{name} is used for two different statuses")
    return tuple(sorted(by_name.values(), key=lambda e: (e.status.upper(), e.name)))


def load_spec(openapi_path: Path) -> Spec:
    document = load_yaml(openapi_path)
    operations = [
        _operation(document, path, method, raw)
        for path, item in document.get("paths", {}).items()
        for method, raw in item.items()
    ]
    return Spec(document=document, operations=tuple(operations), errors=_errors(document))
