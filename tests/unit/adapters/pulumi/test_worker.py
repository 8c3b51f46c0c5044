"""A step worker passes each `pulumi` run its environment through the run's workspace (settings, its key
service's address, then the long-lived provider's address, which changes when the provider is replaced) and
never changes its own process's environment; a failed step is reported by kind, and all but a busy stack's
start afresh. Every stack it selects names the worker's secrets provider.

The Automation API's workspace, stack and command stand in for the real ones: no Pulumi CLI runs here."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto

from reconciler.adapters.pulumi import worker
from reconciler.adapters.pulumi.compat import engine_error
from reconciler.adapters.pulumi.failures import Failure
from reconciler.adapters.pulumi.settings import PulumiSettings
from reconciler.adapters.pulumi.worker import Outcome, Step, StepWorker
from tests.stacks.test_program import DESIRED


class StandInWorkspace:
    def __init__(self, **options: Any) -> None:
        self.env_vars: dict[str, str] = options["env_vars"]
        self.program: Callable[[], None] | None = options["program"]
        self.secrets_provider: str = options["secrets_provider"]
        self.removed: list[str] = []
        self.settings: dict[str, auto.StackSettings] = {}

    def stack_settings(self, name: str) -> auto.StackSettings:
        if name not in self.settings:
            raise FileNotFoundError(name)
        return self.settings[name]

    def save_stack_settings(self, name: str, settings: auto.StackSettings) -> None:
        self.settings[name] = settings

    def remove_stack(self, name: str, force: bool = False) -> None:
        self.removed.append(name)


class StandInStack:
    """Records the environment of each run; fails a run with `fail_with` if set."""

    def __init__(self, name: str, workspace: StandInWorkspace, *, create: bool) -> None:
        self.name, self.workspace, self.created = name, workspace, create
        self.runs: list[tuple[str, dict[str, str]]] = []
        self.fail_with: auto.errors.CommandError | None = None

    def _run(self, kind: str, on_event: Callable[[auto.EngineEvent], None], **_options: Any) -> None:
        self.runs.append((kind, dict(self.workspace.env_vars)))
        if self.fail_with is not None:
            raise self.fail_with
        summary = auto.events.SummaryEvent(
            maybe_corrupt=False, duration_seconds=1, resource_changes={kind: 2}, policy_packs={}
        )
        on_event(auto.EngineEvent(sequence=1, timestamp=0, summary_event=summary))

    def up(self, **options: Any) -> None:
        self._run("update", **options)

    def destroy(self, **options: Any) -> None:
        self._run("delete", **options)


class StandInProvider:
    """A long-lived provider whose address changes each time it is started again (after `recycle`)."""

    def __init__(self, log_dir: Path, environment: dict[str, str]) -> None:
        self.environment_at_start = environment
        self.port = 40000
        self.recycled = 0

    def environment(self) -> dict[str, str]:
        return {"PULUMI_DEBUG_PROVIDERS": f"kubernetes:{self.port}"}

    def recycle(self) -> None:
        self.recycled += 1
        self.port += 1


class StandInKeyService:
    """A key service that only tells where it listens; its socket is a plain file in the work root."""

    started: list[tuple[str, Path]] = []

    def __init__(self, work_root: Path) -> None:
        self.socket_path = work_root / f"transit-{len(self.started)}.sock"
        self.socket_path.touch()
        self.stopped = False

    @classmethod
    def for_work_root(cls, passphrase: str, work_root: Path) -> StandInKeyService:
        cls.started.append((passphrase, work_root))
        return cls(work_root)

    def environment(self) -> dict[str, str]:
        return dict(KEYS_ENVIRONMENT)

    def stop(self) -> None:
        self.stopped = True


KEYS_ENVIRONMENT = {"VAULT_ADDR": "unix:///keys/transit.sock", "VAULT_TOKEN": "token"}


@pytest.fixture
def stacks(monkeypatch: pytest.MonkeyPatch) -> dict[str, StandInStack]:
    made: dict[str, StandInStack] = {}

    def step_stack(name: str, workspace: StandInWorkspace, *, create: bool) -> StandInStack:
        made[name] = StandInStack(name, workspace, create=create)
        return made[name]

    monkeypatch.setattr(auto, "LocalWorkspace", StandInWorkspace)
    monkeypatch.setattr(auto, "PulumiCommand", object)
    monkeypatch.setattr(worker, "step_stack", step_stack)
    monkeypatch.setattr(worker, "LongLivedProvider", StandInProvider)
    monkeypatch.setattr(worker, "KeyService", StandInKeyService)
    monkeypatch.setattr(StandInKeyService, "started", [])
    return made


def settings(root: Path, secrets_provider: str = "") -> PulumiSettings:
    return PulumiSettings(
        "file:///state",
        str(root),
        str(root / "home"),
        extra_env={"KUBECONFIG": "/kube"},
        secrets_provider=secrets_provider,
    )


def test_each_run_gets_the_settings_and_the_providers_address_and_the_process_environment_stays(
    stacks: dict[str, StandInStack], tmp_path: Path
) -> None:
    before = dict(os.environ)
    step_worker = StepWorker(settings(tmp_path))
    provider = step_worker._provider
    assert isinstance(provider, StandInProvider)
    assert provider.environment_at_start["KUBECONFIG"] == "/kube"

    assert step_worker.run(Step.UP, "ns.web", DESIRED.to_json()).changes == {"update": 2}
    provider.recycle()  # a provider started again listens elsewhere: the cached stack's next run follows it
    assert step_worker.run(Step.UP, "ns.web", DESIRED.to_json()).changes == {"update": 2}
    assert step_worker.run(Step.DESTROY, "ns.web", "").changes == {"delete": 2}

    expected = {**settings(tmp_path).environment(), "GOGC": "200", **KEYS_ENVIRONMENT}
    assert "GOGC" not in provider.environment_at_start  # the long-lived provider keeps Go's default
    assert [(kind, env) for kind, env in stacks["ns.web"].runs] == [
        ("update", {**expected, "PULUMI_DEBUG_PROVIDERS": "kubernetes:40000"}),
        ("update", {**expected, "PULUMI_DEBUG_PROVIDERS": "kubernetes:40001"}),
        ("delete", {**expected, "PULUMI_DEBUG_PROVIDERS": "kubernetes:40001"}),
    ]
    assert stacks["ns.web"].workspace.removed == ["ns.web"]
    assert dict(os.environ) == before


def test_without_a_long_lived_provider_each_run_gets_the_settings_alone(
    stacks: dict[str, StandInStack], tmp_path: Path
) -> None:
    step_worker = StepWorker(
        PulumiSettings("file:///state", str(tmp_path), "home", long_lived_provider=False)
    )
    step_worker.run(Step.UP, "ns.web", DESIRED.to_json())
    assert stacks["ns.web"].runs[0][1] == {
        **step_worker.settings.environment(),
        "GOGC": "200",
        **KEYS_ENVIRONMENT,
    }


def test_the_key_service_starts_once_per_worker_with_the_passphrase_and_names_every_stack(
    stacks: dict[str, StandInStack], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "the-passphrase")
    step_worker = StepWorker(settings(tmp_path))
    for name in ("ns.web", "ns.api", "ns.web"):
        step_worker.run(Step.UP, name, DESIRED.to_json())

    assert StandInKeyService.started == [("the-passphrase", tmp_path)]
    first = step_worker._keys
    assert isinstance(first, StandInKeyService)
    first.socket_path.unlink()  # a cleaner of /tmp removed it: the next step starts the service again
    step_worker.run(Step.UP, "ns.web", DESIRED.to_json())
    assert StandInKeyService.started == [("the-passphrase", tmp_path)] * 2
    assert first.stopped
    assert step_worker._keys is not first
    for name in ("ns.web", "ns.api"):
        workspace = stacks[name].workspace
        assert workspace.secrets_provider == "hashivault://canaryapp"
        assert workspace.settings[name].secrets_provider == "hashivault://canaryapp"


def test_with_the_operators_own_provider_no_key_service_runs_and_the_stacks_name_it(
    stacks: dict[str, StandInStack], tmp_path: Path
) -> None:
    kms = "awskms://alias/canaryapp?region=eu-west-1"
    step_worker = StepWorker(settings(tmp_path, secrets_provider=kms))
    step_worker.run(Step.UP, "ns.web", DESIRED.to_json())

    assert StandInKeyService.started == []
    assert not {"VAULT_ADDR", "VAULT_TOKEN"} & stacks["ns.web"].runs[0][1].keys()
    assert stacks["ns.web"].workspace.secrets_provider == kms
    assert stacks["ns.web"].workspace.settings["ns.web"].secrets_provider == kms


KEYS = "hashivault://canaryapp"


@pytest.mark.parametrize(
    ("before", "provider", "after"),
    [
        pytest.param(
            None, KEYS, auto.StackSettings(secrets_provider=KEYS), id="no settings: name the provider"
        ),
        pytest.param(
            auto.StackSettings(encryption_salt="v1:salt:check", config={"a:b": "c"}),
            KEYS,
            auto.StackSettings(secrets_provider=KEYS, config={"a:b": "c"}),
            id="a passphrase stack: the provider, no salt, its config kept",
        ),
        pytest.param(
            auto.StackSettings(secrets_provider="awskms://old", encrypted_key="b2xk"),
            KEYS,
            auto.StackSettings(secrets_provider=KEYS),
            id="another provider: its wrapped key goes with it",
        ),
        pytest.param(
            auto.StackSettings(secrets_provider=KEYS, encrypted_key="a2V5"),
            KEYS,
            auto.StackSettings(secrets_provider=KEYS, encrypted_key="a2V5"),
            id="already this provider: untouched, its key kept",
        ),
        pytest.param(
            auto.StackSettings(encryption_salt="v1:salt:check"),
            "passphrase",
            auto.StackSettings(encryption_salt="v1:salt:check"),
            id="the passphrase: its salt is in the settings, left alone",
        ),
        pytest.param(None, "passphrase", None, id="the passphrase, no settings: none written"),
    ],
)
def test_a_selected_stack_names_the_workers_secrets_provider(
    before: auto.StackSettings | None, provider: str, after: auto.StackSettings | None
) -> None:
    workspace = StandInWorkspace(env_vars={}, program=None, secrets_provider=provider)
    if before is not None:
        workspace.settings["ns.web"] = before
    worker.use_secrets_provider(workspace, "ns.web", provider)  # type: ignore[arg-type]
    saved = workspace.settings.get("ns.web")
    assert (vars(saved) if saved is not None else None) == (vars(after) if after is not None else None)


@pytest.mark.parametrize(
    ("error", "failure", "starts_afresh"),
    [
        pytest.param(auto.errors.ConcurrentUpdateError, Failure.BUSY, False, id="busy: the same stack again"),
        pytest.param(auto.errors.CompilationError, Failure.PERMANENT, True, id="program"),
        pytest.param(auto.errors.CommandError, Failure.TRANSIENT, True, id="engine"),
    ],
)
def test_a_failed_step_is_reported_by_kind_and_starts_afresh_unless_busy(
    stacks: dict[str, StandInStack],
    tmp_path: Path,
    error: type[auto.errors.CommandError],
    failure: Failure,
    starts_afresh: bool,
) -> None:
    step_worker = StepWorker(settings(tmp_path))
    step_worker.run(Step.UP, "ns.web", DESIRED.to_json())
    failing = stacks["ns.web"]
    failing.fail_with = engine_error(error, "error: denied\nerror: update failed")

    outcome = step_worker.run(Step.UP, "ns.web", DESIRED.to_json())

    assert (outcome.failure, outcome.cause, outcome.changes) == (failure, "error: denied", {})
    step_worker.run(Step.UP, "ns.web", DESIRED.to_json())
    assert (stacks["ns.web"] is not failing) == starts_afresh, "the retry selects the stack again"
    assert isinstance(step_worker._provider, StandInProvider)
    assert step_worker._provider.recycled == (1 if starts_afresh else 0)


def test_a_run_without_a_summary_event_fails_as_the_engines_error(
    stacks: dict[str, StandInStack], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(StandInStack, "up", lambda self, **options: None)
    outcome = StepWorker(settings(tmp_path)).run(Step.UP, "ns.web", DESIRED.to_json())
    assert outcome == Outcome(
        {}, outcome.seconds, Failure.TRANSIENT, "error: the engine sent no summary event for this run"
    )
