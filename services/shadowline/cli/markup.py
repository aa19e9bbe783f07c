"""Rich's `escape` (rich.markup, 13.x), without importing Rich.

Every command module builds its `--help` epilog when it is imported, so `rich.markup` (which
pulls in Rich's text, style and segment machinery) cost every command ~15 ms before its first
request, though only `--help` renders with Rich. tests/unit/test_cli_startup.py holds this
copy to Rich's own on the strings that matter (brackets of JSON and jq, backslashes).
"""

from __future__ import annotations

import re

_TAG = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")


def escape(markup: str) -> str:
    """`markup` with each `[tag]` Rich would read as markup escaped, as rich.markup.escape."""
    markup = _TAG.sub(lambda m: f"{m[1]}{m[1]}\\{m[2]}", markup)
    if markup.endswith("\\") and not markup.endswith("\\\\"):
        return markup + "\\"
    return markup
