"""The JSON API's dependencies run on the event loop: FastAPI runs a plain `def` dependency in its
thread pool, a hop per request that cost a PUT about 0.16 ms of the instance's CPU (a quarter of
what serving it costs) when entrypoints.deps had them as `def`."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from shadowline.entrypoints.http import config, ha, probes


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _runs_on_the_loop(call: Any) -> bool:
    if inspect.isfunction(call) or inspect.ismethod(call):
        return inspect.iscoroutinefunction(call)
    return inspect.iscoroutinefunction(type(call).__call__)


@pytest.mark.parametrize("module", [config, probes, ha], ids=lambda m: m.__name__)
def test_no_json_api_route_has_a_dependency_fastapi_would_run_in_its_thread_pool(
    module: Any,
) -> None:
    threaded = [
        f"{route.path}: {getattr(call, '__qualname__', call)}"
        for route in module.router.routes
        if isinstance(route, APIRoute)
        for call in _calls(route.dependant)
        if not _runs_on_the_loop(call)
    ]
    assert threaded == []
