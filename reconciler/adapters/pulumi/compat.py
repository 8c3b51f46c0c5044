"""Every use of the Pulumi Automation API's private surface, in one room, so that a Pulumi upgrade that
changes it fails `tests/unit/adapters/pulumi/test_compat.py` (naming what moved) instead of breaking steps
silently:

- `StackInitMode` lives in `pulumi.automation._stack` and is not re-exported, yet `Stack`'s constructor takes
  it: a stack of our own class (below) is made through that constructor;
- `Stack.up` reads the stack's outputs and last history entry back after the run, through `outputs()` and
  `info()`: two more CLI runs, each decrypting the passphrase again, that cost more CPU than the `up` itself.
  A step takes its changes from the engine's summary event instead, so `StepStack` answers both without the
  CLI;
- an engine error is a `CommandError` made from a `CommandResult` (the CLI's output and exit code): a run that
  ended without the summary event is reported as one;
- the SDK sends every debug message of its own (four or five for each resource it registers: "registering
  resource", "registration prepared", ...) to the engine as a blocking `Log` call, in every run, and the
  engine shows them only to `pulumi --debug`, which a step never is: a step worker drops them
  (`drop_sdk_debug_messages`), about 20 CPU-ms a weight step (bench/step_profile.py). Its info, warnings
  and errors still reach the engine.

Nothing else belongs here: the public Automation API is used where it is needed.
"""

from __future__ import annotations

import datetime
from typing import Any

import pulumi.log
from pulumi import automation as auto
from pulumi.automation._stack import StackInitMode


class StepStack(auto.Stack):
    """A stack whose `up` does not read its outputs and last history entry back after the run (`up` still
    calls these two, so they answer without running the CLI)."""

    def outputs(self) -> auto.OutputMap:
        return {}

    def info(self, show_secrets: bool = True) -> auto.UpdateSummary | None:
        return _PLACEHOLDER_SUMMARY


_PLACEHOLDER_SUMMARY = auto.UpdateSummary(
    kind="update", start_time=datetime.datetime.min, message="", environment={}, config={}, result="succeeded"
)


def step_stack(name: str, workspace: auto.LocalWorkspace, *, create: bool) -> StepStack:
    """The stack `name` of `workspace`, created if `create` and missing; selected otherwise (the Automation
    API raises StackNotFoundError if it does not exist)."""
    return StepStack(name, workspace, StackInitMode.CREATE_OR_SELECT if create else StackInitMode.SELECT)


def engine_error(kind: type[auto.errors.CommandError], stderr: str) -> auto.errors.CommandError:
    """An error of the engine's own kind, as the Automation API raises it for a failed CLI run."""
    return kind(auto.CommandResult(stdout="", stderr=stderr, code=1))


def drop_sdk_debug_messages() -> None:
    """In a step worker: the SDK's debug messages (`pulumi.log.debug`, which its runtime modules call through
    the `log` module) are dropped instead of sent to the engine, one blocking call each."""
    pulumi.log.debug = _drop_debug_message


def _drop_debug_message(msg: str, *_args: Any, **_kwargs: Any) -> None:
    return None
