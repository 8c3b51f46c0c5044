"""The gateway-api router's weights count only once the HTTPRoute is accepted (machine.py with routes.py):
no check and no step before, the check window afresh on acceptance, a rollback past the progress deadline,
each with the parents' own words as evidence; tick by tick, time passed in."""

from __future__ import annotations

import pytest

from reconciler.core import reasons
from reconciler.core.decisions import Advance, Hold, Observations, Rollback, WaitForRoute
from reconciler.core.machine import decide
from reconciler.core.model import CheckOutcome, Phase, RolloutResult
from reconciler.core.routes import GatewayRef, ParentVerdict, RouteState
from tests.unit.core.test_machine import CLEAN, at, ready, running, spec, stamp, status

PUBLIC = GatewayRef("gateways", "public")
ACCEPTED = RouteState(True, 4, (90, 10), (ParentVerdict(PUBLIC, True, "Accepted", ""),))
PENDING = RouteState(True, 4, (90, 10), (ParentVerdict(PUBLIC, False, "Pending", "no status yet"),))
REJECTED = RouteState(
    True, 4, (90, 10), (ParentVerdict(PUBLIC, False, "NotAllowedByListeners", "namespace shop"),)
)
GATEWAY_SPEC = spec(router="gateway-api", parentRefs=[{"name": "public", "namespace": "gateways"}])
# Weight 10 since t=0, the check due at t=10 (trafficShiftUpdateInterval 10).
AT_10 = running(10, checked_at=0, lastTrafficShift=stamp(0))
STARTED = {"image": "app:v2", "startedAt": stamp(0), "weights": [10]}


def observed(route: RouteState, **more: object) -> Observations:
    return Observations(canary=ready("app:v2"), route=route, **more)  # type: ignore[arg-type]


def test_a_weight_not_yet_accepted_holds_without_a_check_or_a_step() -> None:
    decision = decide(GATEWAY_SPEC, status(**AT_10), observed(PENDING, check=CLEAN), at(12))
    assert type(decision) is WaitForRoute
    assert decision.is_warning
    assert decision.reason == reasons.ROUTE_NOT_ACCEPTED
    assert decision.status.canary_weight == 10
    assert decision.status.route_pending_since == stamp(12)
    assert decision.status.checks == ()  # the check of this pass, if any, is not recorded: it judged nothing
    assert "Gateway gateways/public: Pending: no status yet" in decision.status.message
    assert decision.requeue_after == 1


def test_a_controller_that_answers_within_seconds_is_no_news() -> None:
    decision = decide(GATEWAY_SPEC, status(**AT_10), observed(PENDING), at(3))
    assert type(decision) is Hold
    assert decision.reason == reasons.WAITING
    assert decision.status.route_pending_since == stamp(3)


def test_the_waiting_start_is_kept_while_the_route_waits() -> None:
    pending = status(**AT_10, routePendingSince=stamp(12))
    decision = decide(GATEWAY_SPEC, pending, observed(PENDING), at(30))
    assert type(decision) is WaitForRoute
    assert decision.status.route_pending_since == stamp(12)


def test_a_rejected_route_is_reported_with_its_parents_reason() -> None:
    decision = decide(GATEWAY_SPEC, status(**AT_10), observed(REJECTED), at(12))
    assert type(decision) is WaitForRoute
    assert "is rejected by its Gateways" in decision.message
    assert "Gateway gateways/public: NotAllowedByListeners: namespace shop" in decision.message


def test_on_acceptance_the_check_window_starts_afresh() -> None:
    pending = status(**AT_10, routePendingSince=stamp(12))
    decision = decide(GATEWAY_SPEC, pending, observed(ACCEPTED, check=CLEAN), at(40))
    assert type(decision) is Hold
    assert decision.reason == reasons.ROUTE_ACCEPTED
    assert decision.status.route_pending_since is None
    assert decision.status.last_traffic_shift == stamp(40)
    assert decision.status.last_check_time == stamp(40)
    assert decision.status.canary_weight == 10
    assert decision.status.checks == ()
    assert "accepted by every parent after 28s" in decision.message
    assert decision.requeue_after == 10


def test_an_accepted_route_lets_the_check_decide_and_the_next_weight_awaits_its_route() -> None:
    decision = decide(GATEWAY_SPEC, status(**AT_10), observed(ACCEPTED, check=CLEAN), at(10))
    assert type(decision) is Advance
    assert decision.status.canary_weight == 20
    assert decision.status.checks[-1].outcome == CheckOutcome.CLEAN
    # The new weight counts from the pass that sees its route accepted, looked for every second.
    assert decision.status.route_pending_since == stamp(10)
    assert decision.requeue_after == 1


def test_the_first_weight_awaits_its_route_too() -> None:
    waiting = status(**running(0, checked_at=0))
    decision = decide(GATEWAY_SPEC, waiting, Observations(canary=ready("app:v2")), at(5))
    assert type(decision) is Advance
    assert decision.status.canary_weight == 10
    assert decision.status.route_pending_since == stamp(5)


@pytest.mark.parametrize("route", [PENDING, REJECTED], ids=["pending", "rejected"])
def test_past_the_progress_deadline_the_canary_is_rolled_back(route: RouteState) -> None:
    the_spec = spec(
        router="gateway-api",
        parentRefs=[{"name": "public", "namespace": "gateways"}],
        progressDeadlineSeconds=60,
    )
    pending = status(**AT_10, routePendingSince=stamp(12), rollouts=[STARTED])
    assert type(decide(the_spec, pending, observed(route), at(59))) is WaitForRoute
    decision = decide(the_spec, pending, observed(route), at(60))
    assert type(decision) is Rollback
    assert decision.status.phase == Phase.FAILED
    assert decision.status.canary_weight == 0
    assert decision.status.route_pending_since is None
    assert decision.status.message.startswith("Rolled back app:v2: the HTTPRoute carrying weight 10% was")
    assert "within progressDeadlineSeconds (60s): Gateway gateways/public:" in decision.status.message
    record = decision.status.rollouts[-1]
    assert record.result == RolloutResult.ROLLED_BACK
    assert record.reason.startswith(f"{reasons.ROUTE_NOT_ACCEPTED}: the HTTPRoute carrying weight 10%")


def test_istio_confirms_nothing() -> None:
    decision = decide(spec(), status(**AT_10), Observations(canary=ready("app:v2"), check=CLEAN), at(10))
    assert type(decision) is Advance
    assert decision.status.route_pending_since is None
    assert decision.requeue_after == 10
