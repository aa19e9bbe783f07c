"""Holds an answer to its schema in the OpenAPI document (GET /openapi.json): the tests that
make the answers schemathesis cannot reach (an HA pair, a quarantine, a tampered log) check
them against what the document says."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator


def schema_of(doc: dict[str, Any], method: str, path: str, status: int = 200) -> dict[str, Any]:
    """The JSON schema of the answer, its $refs resolvable within the document."""
    answer = doc["paths"][path][method.lower()]["responses"][str(status)]
    schema = answer["content"]["application/json"]["schema"]
    return {**schema, "components": doc["components"]}


def assert_conforms(
    doc: dict[str, Any], method: str, path: str, body: Any, status: int = 200
) -> None:
    """The answer is valid against its documented schema; every problem named if not."""
    validator = Draft202012Validator(schema_of(doc, method, path, status))
    problems = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)
    ]
    assert not problems, f"{method} {path} {status} does not answer as documented: {problems}"
