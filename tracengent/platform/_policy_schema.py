"""The policy file as pydantic models: its tables and the keys each one declares.

Each table is a model with ``extra="forbid"``, so a typo is a problem and not a silently ignored
key; each key's type (``_policy_values``) carries its own grammar and wording. Pydantic reports
every bad key of every table in one pass; rules that relate keys or tables to each other (a
client_id needs its secret, a binding's host must be allowlisted) are ``_policy_rules``.

Every key is optional to pydantic (which keys a table needs is one of those rules), so that a
table with a problem still yields the keys that are fine: validated with ``SALVAGE`` as context,
a bad value reads as absent, a bad array entry is dropped and a non-table entry of an array of
tables is None, keeping the indexes of the others. The rules then still see, say, the
permissions of an agent whose id is missing, and do not report the limits on them as unknown
on top.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Final

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from ._policy_values import (
    AllowedHost,
    AllowOrDeny,
    Amount,
    BoundHost,
    Credential,
    CurrencyCode,
    ExactPermission,
    FieldPath,
    Flag,
    FxRates,
    Method,
    OneField,
    PathGlob,
    PermissionPattern,
    PositiveNumber,
    Strategy,
    Text,
    TokenCount,
    WholeSeconds,
    agent_tables,
    array_of_strings,
    array_of_tables,
    not_a_table,
)

__all__ = [
    "SALVAGE",
    "AgentTable",
    "HttpBindingTable",
    "LimitTable",
    "NamedBindingTable",
    "PolicyDocument",
    "RedactionTable",
    "Table",
    "ToolsTable",
]

#: validation context that reads what is usable of a document whose problems are known
SALVAGE: Final = {"salvage": True}


def _salvaging(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and bool(info.context.get("salvage"))


# --- tables -----------------------------------------------------------------------------------


class Table(BaseModel):
    """A TOML table: no key it does not declare, every declared key optional (see the module).

    ``check_order`` lists the keys in the order their problems are reported, when that differs
    from the order they are declared (and listed to someone who wrote an unknown key) in.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    check_order: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="wrap")
    @classmethod
    def _a_table(
        cls, data: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        if _salvaging(info):
            if not isinstance(data, dict):
                return None  # a non-table entry of an array: its problem is reported already
            return handler({key: value for key, value in data.items() if key in cls.model_fields})
        if not isinstance(data, dict):
            raise not_a_table(data)
        return handler(data)

    @field_validator("*", mode="wrap")
    @classmethod
    def _usable_part(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        """The key's value; when salvaging, the part of it that is valid (entries of an array,
        of a mapping) or else the key's default, typed as the key is."""
        try:
            return handler(value)
        except ValidationError:
            if not _salvaging(info):
                raise
        assert info.field_name is not None
        default = cls.model_fields[info.field_name].get_default(call_default_factory=True)
        if isinstance(default, tuple) and isinstance(value, list):
            return tuple(item for entry in value for item in _usable(handler, [entry], ()))
        if isinstance(default, dict) and isinstance(value, dict):
            usable: dict[str, Any] = {}
            for key, item in value.items():
                usable.update(_usable(handler, {key: item}, {}))
            return usable
        return default

    @classmethod
    def keys_in_check_order(cls) -> tuple[str, ...]:
        return cls.check_order or tuple(cls.model_fields)


def _usable(handler: ValidatorFunctionWrapHandler, value: Any, empty: Any) -> Any:
    """``value`` validated, or ``empty`` when it has a problem."""
    try:
        return handler(value)
    except ValidationError:
        return empty


class AgentTable(Table):
    """An [[agents]] table: one agent, its credentials and its permission patterns."""

    id: Text | None = None
    client_id: Credential | None = None
    client_secret: Credential | None = None
    ingest_key: Credential | None = None
    disabled: Flag | None = None
    permissions: Annotated[tuple[PermissionPattern, ...], BeforeValidator(array_of_strings)] = ()
    llm_token_budget: TokenCount | None = None


class LimitTable(Table):
    """A [[limits]] table: the amounts allowed under a permission pattern."""

    permission: PermissionPattern | None = None
    max_amount: Amount | None = None
    require_approval_over: Amount | None = None
    redact_fields: Annotated[tuple[FieldPath, ...], BeforeValidator(array_of_strings)] = ()


class RedactionTable(Table):
    """One entry of a binding's ``redactions``: a field scrubbed before the call leaves."""

    field: FieldPath | None = None
    strategy: Strategy | None = None


Redactions = Annotated[tuple[RedactionTable | None, ...], BeforeValidator(array_of_tables)]


class HttpBindingTable(Table):
    """A [[tools.http]] binding: calls to a host (a method, a path glob) and their permission."""

    check_order: ClassVar[tuple[str, ...]] = (
        "permission",
        "host",
        "method",
        "path",
        "amount_field",
        "currency_field",
        "currency",
        "redactions",
    )

    host: BoundHost | None = None
    method: Method | None = None
    path: PathGlob | None = None
    permission: ExactPermission | None = None
    amount_field: OneField | None = None
    currency_field: OneField | None = None
    currency: CurrencyCode | None = None
    redactions: Redactions = ()


class NamedBindingTable(Table):
    """A [[tools.mcp]] or [[tools.function]] binding: a tool or function by its exact name."""

    check_order: ClassVar[tuple[str, ...]] = (
        "permission",
        "name",
        "amount_field",
        "currency_field",
        "currency",
        "redactions",
    )

    name: Text | None = None
    permission: ExactPermission | None = None
    amount_field: OneField | None = None
    currency_field: OneField | None = None
    currency: CurrencyCode | None = None
    redactions: Redactions = ()


class ToolsTable(Table):
    """[tools]: the bindings, by transport; any other key is an unknown transport."""

    http: Annotated[tuple[HttpBindingTable | None, ...], BeforeValidator(array_of_tables)] = ()
    mcp: Annotated[tuple[NamedBindingTable | None, ...], BeforeValidator(array_of_tables)] = ()
    function: Annotated[tuple[NamedBindingTable | None, ...], BeforeValidator(array_of_tables)] = ()


class PolicyDocument(Table):
    """The whole file; ``DEFAULT_POLICY_TOML`` documents every key."""

    check_order: ClassVar[tuple[str, ...]] = (
        "currency",
        "fx_rates",
        "approval_ttl_seconds",
        "token_ttl_seconds",
        "unbound_tools",
        "unbound_paths",
        "egress_allowlist",
        "agents",
        "limits",
        "tools",
    )

    currency: CurrencyCode | None = None
    approval_ttl_seconds: PositiveNumber | None = None
    token_ttl_seconds: WholeSeconds | None = None
    unbound_tools: AllowOrDeny | None = None
    unbound_paths: AllowOrDeny | None = None
    egress_allowlist: Annotated[tuple[AllowedHost, ...], BeforeValidator(array_of_strings)] = ()
    # After currency: the rates are checked against it.
    fx_rates: FxRates = Field(default_factory=dict)
    agents: Annotated[tuple[AgentTable | None, ...], BeforeValidator(agent_tables)] = Field(
        default=(), validate_default=True
    )
    limits: Annotated[tuple[LimitTable | None, ...], BeforeValidator(array_of_tables)] = ()
    tools: ToolsTable | None = None
