"""What the OpenAPI document (GET /openapi.json) says of the JSON API's bodies: the answers'
shapes and every refusal's, as entrypoints.errors renders them.

Documentation only: the routes keep returning their dicts (no response_model, so no pydantic
pass over every answer). The models below are the schemas; `answers(...)` gives a route its
`responses=` table, and `config_kind_paths` gives each config kind its own PUT path with the
kind's JSON Schema (schemas/config/) as the body, because OpenAPI cannot tie a body's schema to
the value of a path parameter. The HA answers other than GET /ha's status, and the signed
calls' bodies, are in entrypoints.http.openapi_ha.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shadowline.domain.kinds import NAME_PATTERN


class _Open(BaseModel):
    """An answer that may carry more fields than the ones named (DESIGN.md: "at least")."""

    model_config = ConfigDict(extra="allow")


class FieldProblem(BaseModel):
    path: str = Field(
        description="JSON path of the offending value ($.virtual_port), or the "
        "parameter or header named (kind, name, If-Match)"
    )
    message: str


class ErrorBody(_Open):
    error: str


class InvalidBody(BaseModel):
    error: str
    errors: list[FieldProblem]


class ConflictBody(_Open):
    error: str
    expected: int | None = Field(None, description="the version the request named")
    version: int | None = Field(None, description="the item's current version (null: absent)")
    master: str | None = Field(None, description="where to ask instead (an HA action's master)")


class PreconditionBody(BaseModel):
    error: str
    version: int = Field(description="the item's current version")


class NotWritableBody(BaseModel):
    error: str
    master: str | None = Field(description="the writable master's URL, when known")
    outcome: Literal["unknown"] | None = Field(
        None,
        description="present when the write was stored here but not acknowledged (with "
        "Retry-After): it may or may not last, so look before sending it again",
    )


class WriteResult(BaseModel):
    kind: str
    name: str
    version: int
    position: int | None = Field(description="the event's log position (null: a local kind)")
    epoch: int


class Item(BaseModel):
    value: Any = Field(description="the item's value, valid against its kind's JSON Schema")
    version: int


class State(BaseModel):
    position: int
    items: dict[str, Any] = Field(description='"<kind>/<name>": value, for every live item')
    local: dict[str, Any] | None = Field(None, description="local kinds (only for now)")


class Diff(_Open):
    from_: int = Field(alias="from")
    to: int


class Health(BaseModel):
    instance: str
    role: str
    epoch: int
    position: int


class HaStatus(_Open):
    role: str
    epoch: int
    position: int


_REFUSALS: dict[int, tuple[type[BaseModel], str]] = {
    400: (InvalidBody, "the body is not JSON"),
    401: (ErrorBody, "no or wrong credentials (WWW-Authenticate: Basic)"),
    403: (ErrorBody, "the user's role may not do this, or a cross-site or unsigned peer call"),
    404: (ErrorBody, "absent"),
    409: (ConflictBody, "the state does not allow it (a version conflict names both versions)"),
    412: (PreconditionBody, "If-None-Match: * and the item exists"),
    413: (ErrorBody, "the body is over the size limit"),
    415: (ErrorBody, "a body that is not application/json"),
    422: (InvalidBody, "a value, parameter or header that is not valid"),
    429: (ErrorBody, "too many failed logins from this address (Retry-After)"),
    503: (NotWritableBody, "this instance may not do this now (master: where to go instead)"),
}


def answers(
    ok: type[BaseModel] | None, *codes: int, created: bool = False, media: str = ""
) -> dict[int | str, dict[str, Any]]:
    """A route's `responses=`: its answer (200, and 201 when it can create) and its refusals."""
    table: dict[int | str, dict[str, Any]] = {}
    if media:
        table[200] = {"description": "OK", "content": {media: {"schema": {"type": "string"}}}}
    elif ok is not None:
        table[200] = {"model": ok, "description": "OK"}
    if created:
        table[201] = {"model": ok, "description": "Created"}
    for code in sorted(codes):
        model, said = _REFUSALS[code]
        table[code] = {"model": model, "description": said}
    return table


READ = (401, 403, 422, 429)  # any authenticated read
WRITE = (400, 401, 403, 409, 413, 415, 422, 429, 503)  # any authenticated state-changing call

NAME_SCHEMA = {"type": "string", "pattern": NAME_PATTERN.pattern}


TIME: dict[str, Any] = {
    "type": "string",
    "format": "date-time",
    "description": "RFC 3339, e.g. 2026-11-24T10:02:00Z",
}
POINT: dict[str, Any] = {
    "anyOf": [{"type": "string", "pattern": "^[0-9]{1,18}$"}, TIME],
    "description": "a position (digits) or an RFC 3339 time",
}
_QUERY_SCHEMAS: dict[str, dict[str, Any]] = {
    "as_of": TIME,
    "since": TIME,
    "until": TIME,
    "from": POINT,
    "to": POINT,
}


def tidy(doc: dict[str, Any]) -> None:
    """What FastAPI's document says that the API does not do: an optional parameter is absent
    when not given (it is never `null`), a time is RFC 3339, and a documented answer's schema
    is its model alone (FastAPI adds `"type": "string"` beside the `$ref` of a route that
    returns a Response)."""
    for operations in doc["paths"].values():
        for operation in operations.values():
            _refusals_of(doc, operation)
            for parameter in operation.get("parameters", ()):
                _not_null(parameter)
                if parameter["in"] == "query" and parameter["name"] in _QUERY_SCHEMAS:
                    parameter["schema"] = dict(_QUERY_SCHEMAS[parameter["name"]])
            for answer in operation.get("responses", {}).values():
                content = answer.get("content", {})
                if len(content) > 1 and content.get(JSON, {}).get("schema") == {"type": "string"}:
                    del content[JSON]  # FastAPI's default beside a stream's or text's own type
                for media in content.values():
                    schema = media.get("schema", {})
                    if "$ref" in schema:
                        media["schema"] = {"$ref": schema["$ref"]}


def _refusals_of(doc: dict[str, Any], operation: dict[str, Any]) -> None:
    """Refusals every route of a kind has, for one that did not list its own `answers`: the
    login's (401, 403, 429) where it needs a user, 422 in the product's shape where it takes
    parameters or a body (never FastAPI's `{"detail"}`, which this API does not send)."""
    responses = operation.setdefault("responses", {})
    codes = list(READ if operation.get("security") else ())
    if operation.get("parameters") or operation.get("requestBody"):
        codes.append(422)
    for code in codes:
        current = responses.get(str(code))
        if current is not None and "HTTPValidationError" not in str(current):
            continue
        model, said = _REFUSALS[code]
        ref = {"$ref": _component(doc, model)}
        responses[str(code)] = {"description": said, "content": {JSON: {"schema": ref}}}
    if "HTTPValidationError" not in str(doc["paths"]):
        for unused in ("HTTPValidationError", "ValidationError"):
            doc.get("components", {}).get("schemas", {}).pop(unused, None)


def _component(doc: dict[str, Any], model: type[BaseModel]) -> str:
    """The model (and the models it names) in components/schemas; its $ref."""
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components.setdefault(model.__name__, schema)
    return f"#/components/schemas/{model.__name__}"


JSON = "application/json"


def _not_null(parameter: dict[str, Any]) -> None:
    schema = parameter.get("schema", {})
    kept = [s for s in schema.get("anyOf", ()) if s.get("type") != "null"]
    if len(kept) == 1 and len(kept) < len(schema["anyOf"]):
        parameter["schema"] = {**{k: v for k, v in schema.items() if k != "anyOf"}, **kept[0]}


def config_kind_paths(doc: dict[str, Any], schemas: Mapping[str, Mapping[str, Any]]) -> None:
    """Replace the generic /config/{kind}/{name} of `doc` by one path per kind with its GET, PUT
    and DELETE: the PUT's body is that kind's JSON Schema (components/schemas/config.<kind>),
    and each path lists every method it has (schemathesis holds a 405's Allow to it)."""
    generic = doc["paths"].pop("/config/{kind}/{name}", None)
    if generic is None:
        return
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    for kind in sorted(schemas):
        components[f"config.{kind}"] = _embedded(schemas[kind])
        path: dict[str, Any] = {}
        for method, template in generic.items():
            operation = copy.deepcopy(template)
            operation["operationId"] = f"{method}_{kind.replace('-', '_')}"
            operation["parameters"] = [p for p in operation["parameters"] if p["name"] != "kind"]
            _constrain(operation["parameters"], ())
            if method == "put":
                ref = {"$ref": f"#/components/schemas/config.{kind}"}
                operation["requestBody"] = {
                    "required": True,
                    "description": f"the {kind}'s value (schemas/config/{kind}.json)",
                    "content": {"application/json": {"schema": ref}},
                }
            path[method] = operation
        doc["paths"][f"/config/{kind}/{{name}}"] = path


def _constrain(parameters: list[dict[str, Any]], kinds: Iterable[str]) -> None:
    for parameter in parameters:
        if parameter["in"] == "path" and parameter["name"] == "name":
            parameter["schema"] = dict(NAME_SCHEMA)
        elif parameter["in"] == "path" and parameter["name"] == "kind":
            parameter["schema"] = {"type": "string", "enum": sorted(kinds)}


def _embedded(schema: Mapping[str, Any]) -> dict[str, Any]:
    # A schema resource of its own outside the document; inside it, its $id would move the base
    # URI of every $ref, and $schema is the document's (OpenAPI 3.1: JSON Schema 2020-12).
    return {k: v for k, v in schema.items() if k not in ("$schema", "$id")}
