"""Gateway API routes as data: the Gateways an HTTPRoute attaches to, and when a route counts as applied.

An HTTPRoute the API server stored is not yet a route traffic follows: each parent Gateway's controller must
accept it first, and says so in the route's `status.parents` (one entry per parentRef it handles, with the
conditions `Accepted` and `ResolvedRefs` and the `observedGeneration` they describe). Until every parentRef of
the spec has both conditions True for the route's current generation, the weights the reconciler declared are
not the weights the Gateways use, and the reconciler must not judge a canary by them (machine.py). Pure, so it
is table-tested on its own (tests/unit/core/test_routes.py), like readiness.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.core.model import MAX_EVIDENCE_TEXT, ParentRef
from reconciler.core.text import printable

# How often a pass looks at a route whose weight is not confirmed yet: a read by name, for a few seconds after
# each step (bounded by progressDeadlineSeconds when a Gateway never answers).
ACCEPTANCE_RECHECK_SECONDS = 1.0
GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_KIND = "Gateway"
ACCEPTED = "Accepted"
RESOLVED_REFS = "ResolvedRefs"


@dataclass(frozen=True, order=True)
class GatewayRef:
    """A parentRef with its namespace filled in (the CanaryApp's when the spec names none)."""

    namespace: str
    name: str
    section_name: str | None = None
    port: int | None = None

    def describe(self) -> str:
        listener = f" listener {self.section_name}" if self.section_name else ""
        port = f" port {self.port}" if self.port else ""
        return f"Gateway {self.namespace}/{self.name}{listener}{port}"


def gateway_refs(namespace: str, parent_refs: Iterable[ParentRef]) -> tuple[GatewayRef, ...]:
    return tuple(
        GatewayRef(ref.namespace or namespace, ref.name, ref.section_name, ref.port) for ref in parent_refs
    )


@dataclass(frozen=True)
class ParentVerdict:
    """What one parent Gateway said about the route: accepted or not, with its own reason and message."""

    parent: GatewayRef
    accepted: bool
    reason: str
    message: str

    def describe(self) -> str:
        # The reason and message are the Gateway controller's words: kept printable and short.
        said = f"{self.reason}: {self.message}" if self.message else self.reason
        return f"{self.parent.describe()}: {printable(said)[:MAX_EVIDENCE_TEXT]}"


@dataclass(frozen=True)
class RouteState:
    """Whether the HTTPRoute the API server holds carries the declared weights and is accepted by every
    parent at its current generation; `verdicts` are the evidence, one per parentRef of the spec."""

    exists: bool
    generation: int
    weights: tuple[int, ...]
    verdicts: tuple[ParentVerdict, ...]

    @property
    def accepted(self) -> bool:
        return self.exists and bool(self.verdicts) and all(verdict.accepted for verdict in self.verdicts)

    @property
    def rejected(self) -> tuple[ParentVerdict, ...]:
        """The parents that answered for this generation and refused the route (Accepted=False)."""
        return tuple(v for v in self.verdicts if not v.accepted and v.reason not in (PENDING, STALE))

    def describe(self) -> str:
        if not self.exists:
            return "the HTTPRoute does not exist yet"
        waiting = [verdict.describe() for verdict in self.verdicts if not verdict.accepted]
        return "; ".join(waiting) if waiting else "accepted by every parent"


def declared_weights(canary_weight: int, with_baseline: bool) -> tuple[int, ...]:
    """The weights a CanaryApp's route declares, in the order of its destinations: the primary's, the
    canary's and, while a baseline runs, the baseline's (the canary's again: both see the same share)."""
    if with_baseline:
        return 100 - 2 * canary_weight, canary_weight, canary_weight
    return 100 - canary_weight, canary_weight


# Reasons of our own for a parent that has not answered (yet) for the route's current generation.
PENDING = "Pending"
STALE = "StaleGeneration"


def route_state(
    route: Mapping[str, Any] | None, parents: Iterable[GatewayRef], weights: tuple[int, ...]
) -> RouteState:
    """The state of `route` (the HTTPRoute as the API server serves it, JSON; None: it does not exist) for
    the parentRefs `parents` and the declared `weights` (`declared_weights`: primary, canary and, while a
    baseline runs, the baseline's).

    A route whose backendRefs carry other weights than `weights` is not applied yet (or was edited by hand):
    every parent counts as pending, whatever its conditions say.
    """
    wanted = tuple(sorted(set(parents)))
    if route is None:
        return RouteState(False, 0, (), tuple(ParentVerdict(p, False, PENDING, "") for p in wanted))
    metadata = route.get("metadata") or {}
    namespace = str(metadata.get("namespace") or "")
    generation = int(metadata.get("generation") or 0)
    rules = (route.get("spec") or {}).get("rules") or [{}]
    found_weights = tuple(int(ref.get("weight", 1)) for ref in rules[0].get("backendRefs") or [])
    statuses = {
        _parent_of(entry.get("parentRef") or {}, namespace): entry.get("conditions") or []
        for entry in (route.get("status") or {}).get("parents") or []
    }
    verdicts = []
    for parent in wanted:
        if found_weights != weights:
            verdicts.append(
                ParentVerdict(
                    parent, False, PENDING, f"the route carries weights {found_weights}, not {weights}"
                )
            )
            continue
        verdicts.append(_verdict(parent, statuses.get(parent), generation))
    return RouteState(True, generation, found_weights, tuple(verdicts))


def _parent_of(ref: Mapping[str, Any], route_namespace: str) -> GatewayRef | None:
    if ref.get("group", GATEWAY_GROUP) != GATEWAY_GROUP or ref.get("kind", GATEWAY_KIND) != GATEWAY_KIND:
        return None
    port = ref.get("port")
    return GatewayRef(
        str(ref.get("namespace") or route_namespace),
        str(ref.get("name") or ""),
        ref.get("sectionName") or None,
        int(port) if port is not None else None,
    )


def _verdict(
    parent: GatewayRef, conditions: list[Mapping[str, Any]] | None, generation: int
) -> ParentVerdict:
    if conditions is None:
        return ParentVerdict(parent, False, PENDING, "no status from the Gateway's controller yet")
    by_type = {str(condition.get("type")): condition for condition in conditions}
    for wanted in (ACCEPTED, RESOLVED_REFS):
        condition = by_type.get(wanted)
        if condition is None:
            return ParentVerdict(parent, False, PENDING, f"no {wanted} condition yet")
        seen = int(condition.get("observedGeneration") or 0)
        if seen != generation:
            return ParentVerdict(
                parent, False, STALE, f"{wanted} describes generation {seen}, the route is at {generation}"
            )
        if condition.get("status") != "True":
            reason = str(condition.get("reason") or f"Not{wanted}")
            return ParentVerdict(parent, False, reason, str(condition.get("message") or ""))
    accepted = by_type[ACCEPTED]
    return ParentVerdict(
        parent, True, str(accepted.get("reason") or ACCEPTED), str(accepted.get("message") or "")
    )
