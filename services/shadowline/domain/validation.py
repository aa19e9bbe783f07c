"""Validation of kinds, names and values against the JSON Schemas in `schemas/`.

The catalog is built from already loaded schema documents; reading the files is the adapters'
job, so this module stays free of I/O.

Two validators per kind. jsonschema is the authority: it lists every error with its JSON path.
fastjsonschema compiles the same schema to plain Python, about 20x faster, and only answers
"valid or not" (it reads the 2020-12 schemas as draft-07, which is the same for the keywords
they use). A value the fast check accepts is accepted at once; any other value goes through
jsonschema, so every refusal and every 422 body is exactly jsonschema's, and where the fast check
is the stricter one (it reads a pattern's "$" as end of string) jsonschema still accepts.
tests/unit/test_validation_fast_path.py holds that the fast check never accepts more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, NoReturn

import fastjsonschema
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


MAX_DEPTH = 32  # arrays and objects within one another; no kind's schema needs more than 3


def _too_deep(value: Any, limit: int = MAX_DEPTH) -> str | None:
    """The path of the item's member (`$.display_name`) that nests containers deeper than
    `limit`, or None. Iterative: a 1,000-deep value made the recursive checks (and jsonschema)
    raise RecursionError, a 500; orjson parses up to 1,024 levels and writes only 255."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "$")]
    while stack:
        item, depth, top = stack.pop()
        if isinstance(item, dict):
            children: Iterator[tuple[str, Any]] = ((f".{k}", v) for k, v in item.items())
        elif isinstance(item, list):
            children = ((f"[{i}]", v) for i, v in enumerate(item))
        else:
            continue
        if depth > limit:
            return top
        stack.extend((v, depth + 1, top if depth > 1 else f"${step}") for step, v in children)
    return None


def _no_fetch(uri: str) -> NoReturn:
    # fastjsonschema would fetch a remote $ref with urllib; the domain does no I/O.
    raise ValueError(f"remote $ref not allowed in config schemas: {uri}")


def _fast_accepts(schema: Mapping[str, Any]) -> Callable[[Any], bool]:
    """True when the value is valid; False says only "ask jsonschema for the details"."""
    validate = fastjsonschema.compile(
        dict(schema),
        handlers={"http": _no_fetch, "https": _no_fetch, "file": _no_fetch},
        use_default=False,  # never fill in defaults: validation must not change the value
        use_formats=False,  # jsonschema treats "format" as an annotation only, so do we
        detailed_exceptions=False,
    )

    def accepts(value: Any) -> bool:
        try:
            validate(value)
        except fastjsonschema.JsonSchemaException:
            return False
        return True

    return accepts


EXACT_FLOAT = 2**53  # every whole number up to this is a float exactly, and back


def whole_numbers(value: Any) -> Any:
    """The value with every whole-valued number as an int: 443.0 becomes 443.

    JSON has one number type, and JSON Schema (2020-12) calls 443.0 an integer, so a port sent
    as 443.0 is valid; but Python (orjson) parses it as a float, and the stored value, every
    replica and every read would then say 443.0 where the schema says integer. Only numbers
    within +-2**53 are changed (a float there is exactly its int); a larger whole float stays
    as it is (no kind allows it where it says integer). Run after `Catalog.check`, which bounds
    the depth.
    """
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) <= EXACT_FLOAT else value
    if isinstance(value, dict):
        return {key: whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [whole_numbers(item) for item in value]
    return value


class Catalog:
    """The JSON Schema of every config kind, compiled once."""

    def __init__(self, schemas: Mapping[str, Mapping[str, Any]]) -> None:
        missing = ALL_KINDS - schemas.keys()
        if missing:
            raise ValueError(f"no JSON Schema for config kinds: {', '.join(sorted(missing))}")
        self._validators = {}
        self._fast: dict[str, Callable[[Any], bool]] = {}
        for kind, schema in schemas.items():
            Draft202012Validator.check_schema(schema)
            self._validators[kind] = Draft202012Validator(schema)
            self._fast[kind] = _fast_accepts(schema)

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._validators)

    def schema(self, kind: str) -> Mapping[str, Any]:
        """The JSON Schema of a kind (as loaded from schemas/config/)."""
        found: Mapping[str, Any] = self._validators[kind].schema
        return found

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
        if (deep := _too_deep(value)) is not None:
            raise InvalidInput([FieldError(deep, f"nested deeper than {MAX_DEPTH} levels")])
        if self._fast[kind](value) and next(_nul_paths(value), None) is None:
            return
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
