"""Where the shipped migrations and schemas live: beside the package in a wheel, else the repo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

_PACKAGE = Path(__file__).resolve().parent.parent
_REPO = _PACKAGE.parent.parent


def _locate(name: str) -> Path:
    for candidate in (_PACKAGE / f"_{name}", _REPO / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"shadowline's {name}/ directory is missing from this installation")


def migrations_dir() -> Path:
    return _locate("migrations")


def schemas_dir() -> Path:
    return _locate("schemas")


def load_config_schemas() -> dict[str, dict[str, Any]]:
    return {
        p.stem: orjson.loads(p.read_bytes())
        for p in sorted((schemas_dir() / "config").glob("*.json"))
    }
