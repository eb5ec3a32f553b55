"""Render the Jinja templates that turn `Operation` records into Python source."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2

from ._spec import FORM, Operation, Spec, snake
from ._validate import SENTINELS, Exchange

TEMPLATES = Path(__file__).resolve().parent / "templates"
OUTPUTS = ("__init__.py", "contract.py", "errors.py", "operations.py", "routes.py")


def path_expression(op: Operation) -> str:
    """The operation's path as a Python expression, path parameters percent-encoded."""
    if not op.path_params:
        return repr(op.path)
    return "f" + repr(
        re.sub(r"\{([^}]+)\}", lambda m: "{quote(" + snake(m.group(1)) + ', safe="")}', op.path)
    )


def model_names(models_source: str) -> list[str]:
    tree = ast.parse(models_source)
    return [node.name for node in tree.body if isinstance(node, ast.ClassDef)]


def render_templates(
    spec: Spec, exchanges: list[Exchange], header: Callable[[str, str], str], models: list[str]
) -> dict[str, str]:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["pyrepr"] = repr
    env.globals.update(
        FORM=FORM,
        path_expression=path_expression,
        sentinels=SENTINELS,
    )
    context: dict[str, Any] = {
        "operations": [op for op in spec.operations if op.builder],
        "routes": spec.operations,
        "errors": spec.errors,
        "exchanges": exchanges,
        "models": models,
    }
    rendered = {}
    for name in OUTPUTS:
        template = f"{name}.jinja"
        inputs = "schema/wire_contract.json" if name == "contract.py" else "schema/openapi.yaml"
        context["header"] = header(inputs, f"codegen/templates/{template}")
        rendered[name] = env.get_template(template).render(context)
    return rendered
