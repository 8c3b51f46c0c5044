"""What a step worker process does: runs one step, a Pulumi Automation API `stack.up` (or `destroy`) of the
inline program in `stacks/`, and reports its outcome.

A worker builds the `pulumi` command once and reuses it, and keeps the stacks it selected, so a step pays for
the engine run and nothing else:

- the step's result (its resource changes) comes from the engine's own event stream during the `up`, not
  from the CLI runs the Automation API makes after it to read them back (see `compat`);
- the Kubernetes provider outlives the run (`provider.LongLivedProvider`), so a step does not start it and
  wait for it to fetch the cluster's OpenAPI schema again;
- the stacks' secrets are encrypted with keys the worker's key service (`keys.KeyService`) wraps, so a run
  does not derive the passphrase's key again (unless --secrets-provider names another provider).

Every `pulumi` run gets its environment (`PulumiSettings.run_environment()`, the key service's and the
provider's addresses) through its workspace: no step changes the worker's own environment.
`bench/step_profile.py` shows where a step's time goes.
"""

from __future__ import annotations

import enum
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from pulumi import automation as auto

from reconciler.adapters.pulumi.compat import drop_sdk_debug_messages, engine_error, step_stack
from reconciler.adapters.pulumi.failures import Failure, classify_failure, summarize_step_error
from reconciler.adapters.pulumi.keys import KeyService
from reconciler.adapters.pulumi.provider import LongLivedProvider
from reconciler.adapters.pulumi.settings import PROJECT_NAME, PulumiSettings
from reconciler.core.desired import DesiredStack
from reconciler.core.errors import ReconcileError


class Step(enum.StrEnum):
    UP = "up"
    DESTROY = "destroy"


@dataclass(frozen=True)
class Outcome:
    """What a step reports back to the reconciler's process: its changes, or how it failed and why."""

    changes: dict[str, int]
    seconds: float
    failure: Failure | None = None
    cause: str = ""

    def error(self, step: Step, stack: str) -> ReconcileError | None:
        """The error the step raises; None for a step that succeeded."""
        return None if self.failure is None else self.failure.error(step, stack, self.cause)


class StepWorker:
    """The state of one worker process: its settings, `pulumi` command, selected stacks, provider and key
    service."""

    def __init__(self, settings: PulumiSettings) -> None:
        self.settings = settings
        self._command: auto.PulumiCommand | None = None
        # Stacks this worker has selected before: selecting again costs a CLI run per step for nothing.
        self._stacks: dict[str, auto.Stack] = {}
        self._provider = (
            LongLivedProvider(Path(settings.work_root) / f"provider-{os.getpid()}", settings.environment())
            if settings.long_lived_provider
            else None
        )
        self._keys: KeyService | None = None

    def run(self, step: Step, name: str, desired_json: str) -> Outcome:
        started = time.monotonic()
        try:
            environment = self._environment()
            if step == Step.UP:
                changes = self._up(name, DesiredStack.from_json(desired_json), environment)
            else:
                changes = self._destroy(name, desired_json, environment)
        except auto.errors.CommandError as error:
            failure = classify_failure(error) or Failure.TRANSIENT
            if failure != Failure.BUSY:
                self._stacks.pop(name, None)  # select the stack afresh next time (its state may have gone)
                if self._provider is not None:
                    self._provider.recycle()
            return Outcome({}, time.monotonic() - started, failure, summarize_step_error(error))
        return Outcome(changes, time.monotonic() - started)

    def _environment(self) -> dict[str, str]:
        """The environment of this step's `pulumi` runs; it points them at the key service and the long-lived
        provider (each started when needed)."""
        provider = self._provider.environment() if self._provider is not None else {}
        return {**self.settings.run_environment(), **self.secrets_environment(), **provider}

    def secrets_environment(self) -> dict[str, str]:
        """What a run needs to reach this worker's key service (started again if its socket was removed, as a
        cleaner of /tmp may); nothing with the operator's own provider."""
        if self.settings.secrets_provider:
            return {}
        if self._keys is not None and not self._keys.socket_path.exists():
            self._keys.stop()
            self._keys = None
        if self._keys is None:
            passphrase = self.settings.environment()["PULUMI_CONFIG_PASSPHRASE"]
            self._keys = KeyService.for_work_root(passphrase, Path(self.settings.work_root))
        return self._keys.environment()

    def _up(self, name: str, desired: DesiredStack, environment: dict[str, str]) -> dict[str, int]:
        from stacks.program import build_program  # noqa: PLC0415 - imported in the worker, not the loop

        stack = self._stacks.get(name) or self._stack(name, environment, create=True)
        stack.workspace.env_vars = environment
        stack.workspace.program = build_program(desired)
        self._stacks[name] = stack
        events: list[auto.EngineEvent] = []
        stack.up(color="never", suppress_progress=True, on_output=_ignore, on_event=events.append)
        return _changes(events)

    def _destroy(self, name: str, keep_json: str, environment: dict[str, str]) -> dict[str, int]:
        """Destroys the stack's objects, except those in `keep_json` ([kind, name] pairs), and removes the
        stack; a stack that does not exist has nothing to destroy."""
        try:
            cached = self._stacks.pop(name) if name in self._stacks else None
            stack = cached or self._stack(name, environment, create=False)
        except auto.errors.StackNotFoundError:
            return {}
        stack.workspace.env_vars = environment
        keep = {(str(kind), str(object_name)) for kind, object_name in json.loads(keep_json or "[]")}
        targets = _destroy_targets(stack, keep) if keep else None
        events: list[auto.EngineEvent] = []
        if targets != []:
            stack.destroy(
                color="never",
                suppress_progress=True,
                on_output=_ignore,
                on_event=events.append,
                target=targets,
            )
        else:
            events.append(_NOTHING_DESTROYED)
        stack.workspace.remove_stack(name, force=bool(keep))
        return _changes(events)

    def _stack(self, name: str, environment: dict[str, str], *, create: bool) -> auto.Stack:
        settings = self.settings
        work_dir = Path(settings.work_root) / name
        work_dir.mkdir(parents=True, exist_ok=True)
        workspace = auto.LocalWorkspace(
            work_dir=str(work_dir),
            pulumi_home=settings.pulumi_home,
            env_vars=environment,
            secrets_provider=settings.stacks_secrets_provider,
            pulumi_command=self._pulumi_command(),
            program=lambda: None,
            project_settings=auto.ProjectSettings(
                name=PROJECT_NAME,
                runtime="python",
                main=str(work_dir),
                backend=auto.ProjectBackend(url=settings.backend_url),
            ),
        )
        stack = step_stack(name, workspace, create=create)
        use_secrets_provider(workspace, name, settings.stacks_secrets_provider)
        return stack

    def _pulumi_command(self) -> auto.PulumiCommand:
        """This worker's `pulumi` command, made (it runs `pulumi version`) at its first step."""
        if self._command is None:
            self._command = auto.PulumiCommand()
        return self._command


def use_secrets_provider(workspace: auto.Workspace, name: str, provider: str) -> None:
    """Makes the stack's settings name `provider` if they name another one, or none (a stack made before,
    with the passphrase, or a work root that lost its settings). Pulumi's next run of the stack then makes a
    new data key wrapped by `provider`, reads the old state with the provider the state names (the
    passphrase's, derived once more with PULUMI_CONFIG_PASSPHRASE) and writes it encrypted with the new key.
    The passphrase manager keeps its salt in the settings, so 'passphrase' leaves them alone."""
    if provider == "passphrase":
        return
    try:
        settings = workspace.stack_settings(name)
    except FileNotFoundError:
        settings = auto.StackSettings()
    if settings.secrets_provider == provider:
        return
    settings.secrets_provider = provider
    settings.encrypted_key = None
    settings.encryption_salt = None
    workspace.save_stack_settings(name, settings)


def _ignore(_line: str) -> None:
    return None


def _changes(events: list[auto.EngineEvent]) -> dict[str, int]:
    summary = next((event.summary_event for event in reversed(events) if event.summary_event), None)
    if summary is None:
        raise engine_error(auto.errors.CommandError, "error: the engine sent no summary event for this run")
    return {str(op): count for op, count in (summary.resource_changes or {}).items()}


def _destroy_targets(stack: auto.Stack, keep: set[tuple[str, str]]) -> list[str]:
    """The URNs of the stack's Kubernetes objects except those in `keep` ((kind, name)): a destroy of
    these leaves someone else's object with one of the stack's names alone (the stack is then removed with
    what remains in its state)."""
    resources = (stack.export_stack().deployment or {}).get("resources") or []
    targets = []
    for resource in resources:
        outputs = resource.get("outputs") or {}
        kind, metadata = outputs.get("kind"), outputs.get("metadata") or {}
        if not resource.get("custom") or str(resource.get("type", "")).startswith("pulumi:"):
            continue
        if (kind, metadata.get("name")) not in keep:
            targets.append(str(resource["urn"]))
    return targets


# A destroy that had nothing of its own to delete still reports its (empty) changes.
_NOTHING_DESTROYED = auto.EngineEvent(
    sequence=0,
    timestamp=0,
    summary_event=auto.events.SummaryEvent(
        maybe_corrupt=False, duration_seconds=0, resource_changes={}, policy_packs={}
    ),
)

# The worker of this process: made by the pool's initializer (`start`), used by every step it runs.
_this_worker: StepWorker | None = None


def start(settings: PulumiSettings) -> None:
    global _this_worker  # noqa: PLW0603 - one per worker process, set once
    drop_sdk_debug_messages()
    _this_worker = StepWorker(settings)


def current() -> StepWorker:
    assert _this_worker is not None, "not in a step worker process"
    return _this_worker


def run_step(step: Step, name: str, desired_json: str) -> Outcome:
    """A step, as the pool submits it to a worker process."""
    return current().run(step, name, desired_json)
