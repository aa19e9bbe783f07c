"""schemathesis hooks for tests/e2e/test_openapi_schemathesis.py (loaded by `st run`, not pytest).

GET /config takes `at` or `as_of`, not both (422, tests/integration/test_http_if_none_match.py),
and an OpenAPI document cannot say "one of" of two query parameters: so a case that has both is
sent with `at` alone. (A `before_call` hook, because schemathesis's coverage phase does not run
the filter hooks; schemathesis checks the case as it is sent.)
"""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: Any, kwargs: Any) -> None:
    if case.operation.path == "/config" and case.query and {"at", "as_of"} <= case.query.keys():
        del case.query["as_of"]
