"""Validation of kinds, names and values against the JSON Schemas in `schemas/`.

The catalog is built from already loaded schema documents; reading the files is the adapters'
job, so this module stays free of I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from shadowline.domain.errors import FieldError, InvalidInput
from shadowline.domain.kinds import ALL_KINDS, NAME_PATTERN


def _path(error: ValidationError) -> str:
    parts = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return "$" + parts


def _nul_paths(value: Any, path: str = "$") -> Iterator[str]:
    # PostgreSQL text and jsonb cannot hold U+0000; refusing it here keeps a 422 from becoming a 500.
    if isinstance(value, str):
        if "\x00" in value:
            yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}"
            if "\x00" in key:
                yield child
            yield from _nul_paths(item, child)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nul_paths(item, f"{path}[{index}]")


class Catalog:
    """The JSON Schema of every config kind, compiled once."""

    def __init__(self, schemas: Mapping[str, Mapping[str, Any]]) -> None:
        missing = ALL_KINDS - schemas.keys()
        if missing:
            raise ValueError(f"no JSON Schema for config kinds: {', '.join(sorted(missing))}")
        self._validators = {}
        for kind, schema in schemas.items():
            Draft202012Validator.check_schema(schema)
            self._validators[kind] = Draft202012Validator(schema)

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._validators)

    def check_key(self, kind: str, name: str) -> None:
        errors = []
        if kind not in self._validators:
            known = ", ".join(sorted(self._validators))
            errors.append(FieldError("kind", f"unknown config kind {kind!r} (known: {known})"))
        if not NAME_PATTERN.fullmatch(name):
            errors.append(FieldError("name", f"{name!r} does not match {NAME_PATTERN.pattern}"))
        if errors:
            raise InvalidInput(errors)

    def check(self, kind: str, name: str, value: Any) -> None:
        """Raise InvalidInput listing every violation with its JSON path ('$.virtual_port')."""
        self.check_key(kind, name)
        validator = self._validators[kind]
        errors = [
            FieldError(_path(e), e.message)
            for e in sorted(
                validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path]
            )
        ]
        errors += [FieldError(p, "strings may not contain U+0000") for p in _nul_paths(value)]
        if errors:
            raise InvalidInput(errors)
