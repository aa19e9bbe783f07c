"""The operator's hooks, over their journal in the instance's database and real processes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

from shadowline.adapters.hook_journal import HookJournal
from shadowline.adapters.hook_process import HookProcess
from shadowline.application.hooks import Hooks
from shadowline.settings import Settings

if TYPE_CHECKING:
    from shadowline.bootstrap.wiring import Core


def build_hooks(settings: Settings, core: Core, engine: AsyncEngine) -> Hooks:
    """The operator's hooks; the role-change hook's runner looks at its journal whenever the
    role may have changed."""
    hooks = Hooks(
        settings=settings,
        journal=HookJournal(engine),
        runner=HookProcess(settings.instance, settings.cluster),
        alert=core.monitor.alert,
        publish=core.monitor.publish,
    )
    core.role.watchers.append(hooks.wake)
    return hooks
