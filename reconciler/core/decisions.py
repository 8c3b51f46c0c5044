"""What `decide()` returns and what it decides on: the Decision kinds, the observations of one pass and the
rollout slots.

Each Decision carries the next status and when to look again; its kind names the step for Events, logs,
notifications and the backtest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.core.analysis import CheckResult
from reconciler.core.model import Action, CanaryAppStatus
from reconciler.core.readiness import DeploymentState
from reconciler.core.routes import RouteState

# The longest a CanaryApp waiting for a Deployment goes without a pass: the loop's watch of Deployments wakes
# it as soon as one of them changes, so this is only a safety net (a missed event, a watch that is down).
READINESS_RECHECK_SECONDS = 10.0


# How often a CanaryApp waiting for a rollout slot looks again.
SLOT_POLL_SECONDS = 5.0


@dataclass(frozen=True)
class RolloutSlots:
    """--max-concurrent-rollouts as seen at this pass: rollouts in progress (others') and CanaryApps that
    have waited for a slot longer than this one."""

    limit: int
    active: int
    waiting_before: int

    @property
    def free(self) -> bool:
        return self.active < self.limit and self.waiting_before == 0


@dataclass(frozen=True)
class Observations:
    generation: int = 0
    primary: DeploymentState | None = None
    canary: DeploymentState | None = None
    # Read only while a baseline runs beside the canary (desired.baseline_runs).
    baseline: DeploymentState | None = None
    check: CheckResult | None = None
    requests: Mapping[Action, str] = dataclasses.field(default_factory=dict)  # action -> its token
    slots: RolloutSlots | None = None  # None: no limit on concurrent rollouts
    route: RouteState | None = (
        None  # None: the router has nothing to confirm (Istio), or no weight to confirm
    )


@dataclass(frozen=True)
class Decision:
    status: CanaryAppStatus
    requeue_after: float | None
    reason: str
    message: str

    @property
    def is_warning(self) -> bool:
        return False

    @property
    def kind(self) -> str:
        """The decision's name as logs and the backtest show it."""
        return type(self).__name__


@dataclass(frozen=True)
class Hold(Decision):
    """Nothing to change in the world; look again after `requeue_after` (or on the next event)."""


@dataclass(frozen=True)
class Initialize(Decision):
    pass


@dataclass(frozen=True)
class BecomeReady(Decision):
    pass


@dataclass(frozen=True)
class StartCanary(Decision):
    pass


@dataclass(frozen=True)
class Advance(Decision):
    pass


@dataclass(frozen=True)
class StartBaseline(Decision):
    """A baseline that should run beside a canary carrying weight does not exist: it is started, and the
    weight returns to 0 until it is ready (no request goes to a baseline that cannot serve yet)."""


@dataclass(frozen=True)
class FailCheck(Decision):
    """A failed check below the failure threshold: the weight stays where it is."""

    @property
    def is_warning(self) -> bool:
        return True


@dataclass(frozen=True)
class HoldWeight(Decision):
    """A check without evidence either way (no canary traffic, or an ignored failed query): the weight stays,
    no check counts as failed, and the progress deadline bounds how long this may last."""

    @property
    def is_warning(self) -> bool:
        return True


@dataclass(frozen=True)
class Promote(Decision):
    pass


@dataclass(frozen=True)
class CompletePromotion(Decision):
    pass


@dataclass(frozen=True)
class Rollback(Decision):
    @property
    def is_warning(self) -> bool:
        return True


@dataclass(frozen=True)
class AbandonCanary(Decision):
    pass


@dataclass(frozen=True)
class Retry(Decision):
    """The user asked (by annotation) to try a failed image again."""


@dataclass(frozen=True)
class Pause(Decision):
    """The user asked to hold the weight: no checks, no steps, until resumed."""


@dataclass(frozen=True)
class Resume(Decision):
    """The user asked a paused rollout to go on: the next check is one interval from now."""


@dataclass(frozen=True)
class IgnoreRequest(Decision):
    """A request that does not apply now (promote with no rollout in progress): recorded, not acted on."""

    @property
    def is_warning(self) -> bool:
        return True


@dataclass(frozen=True)
class WaitForRoute(Hold):
    """The weight is declared but not yet accepted by every parent Gateway of the HTTPRoute: it does not
    count (no check, no step) until it is, within progressDeadlineSeconds of the weight change."""

    @property
    def is_warning(self) -> bool:
        return True


@dataclass(frozen=True)
class WaitForSlot(Hold):
    """A new image waits: --max-concurrent-rollouts rollouts are in progress, or others waited longer."""
