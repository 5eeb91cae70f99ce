"""Step progress for the command line: Dagster hooks report finished steps to a callback.

The CLI runs jobs in process, so a hook can call straight into its progress bar. In the UI or a
daemon nobody has set a callback and the hooks do nothing.
"""

from __future__ import annotations

from typing import Callable

from dagster import HookContext, failure_hook, success_hook

_callback: Callable[[str, bool], None] | None = None


def set_progress_callback(callback: Callable[[str, bool], None] | None) -> None:
    global _callback
    _callback = callback


@success_hook
def step_succeeded(context: HookContext) -> None:
    if _callback:
        _callback(context.step_key, True)


@failure_hook
def step_failed(context: HookContext) -> None:
    if _callback:
        _callback(context.step_key, False)


PROGRESS_HOOKS = {step_succeeded, step_failed}
