"""The shape the code keeps (issue 10): small modules, short functions, and a reason where not.

A module over 300 lines, or a function over 50 lines without a comment right above it saying
why, fails here, so the rule holds without anyone counting by hand.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted((REPO / "services").rglob("*.py"))
MAX_MODULE = 300
MAX_FUNCTION = 50


def _long_functions(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    found = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        start = min([d.lineno for d in node.decorator_list] + [node.lineno])
        length = (node.end_lineno or node.lineno) - start + 1
        said = start >= 2 and lines[start - 2].strip().startswith("#")
        if length > MAX_FUNCTION and not said:
            found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_the_sources_are_found() -> None:
    assert len(SOURCES) > 100


def test_no_module_is_over_300_lines() -> None:
    long = {
        str(p.relative_to(REPO)): n
        for p in SOURCES
        if (n := len(p.read_text().splitlines())) > MAX_MODULE
    }
    assert long == {}


def test_no_function_is_over_50_lines_without_a_comment_above_it_saying_why() -> None:
    assert [f for p in SOURCES for f in _long_functions(p)] == []
