"""The apply step of a pass: the stack a decision implies goes to the cluster (`stack.up`) or, for a deleted
CanaryApp, leaves it (`destroy`), and only over objects that are provably this CanaryApp's."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.core.desired import DesiredStack
from reconciler.core.errors import NameConflictError
from reconciler.core.names import Router, owned_objects
from reconciler.core.policy import is_ours
from reconciler.core.ports import ClusterReader, StackRunner, StepReport

NAME_CONFLICT_RETRY_SECONDS = 10.0


def stack_routers(raw: Mapping[str, Any], default_router: Router) -> tuple[Router, ...]:
    """The routers whose objects the stack of CanaryApp `raw` (as stored, valid or not) may hold: the one it
    names (else `default_router`) and the one its last applied stack used (a switch in between: both)."""
    spec, status = raw.get("spec") or {}, raw.get("status") or {}
    named = spec.get("router") or default_router
    applied = status.get("router") or (Router.ISTIO if status.get("lastAppliedHash") else None)
    return tuple(router for router in Router if router.value in {named, applied})


class Applier:
    def __init__(self, cluster: ClusterReader, stacks: StackRunner) -> None:
        self.cluster = cluster
        self.stacks = stacks

    def apply(self, uid: str, desired: DesiredStack, applied_router: Router | None) -> StepReport:
        """Checks ownership of the objects of the desired router and of the router applied last (`None`:
        none; a step that switches routers deletes the old one's), then runs the step (the stack runner's
        fence guards the `up` itself)."""
        routers = (desired.router,) if applied_router is None else (desired.router, applied_router)
        self.check_ownership(desired.namespace, desired.name, uid, routers)
        return self.stacks.apply(desired)

    def destroy(self, namespace: str, name: str, keep: list[tuple[str, str]]) -> StepReport:
        """Destroys the stack, leaving `keep` (`not_ours`) in the cluster."""
        return self.stacks.destroy(namespace, name, keep)

    def check_ownership(self, namespace: str, name: str, uid: str, routers: Iterable[Router]) -> None:
        """Refuses a step (or the stack's destruction) while any object the stack may declare, change or
        delete exists without this CanaryApp's owner reference.

        Only then may the step's server-side apply force its fields (pulumi.com/patchForce), and a step that
        drops the canary or an autoscaler (or the destruction) delete it: every object it touches is absent or
        provably this CanaryApp's. The canary, the baseline and the autoscalers are checked whether or not the
        step declares them, since a step that no longer declares them deletes them; so are the objects of
        every router in `routers`.
        """
        taken = [
            f"{kind} {namespace}/{object_name}"
            for kind, object_name in self.not_ours(namespace, name, uid, routers)
        ]
        if taken:
            raise NameConflictError(
                f"{', '.join(taken)} already exist{'s' if len(taken) == 1 else ''} and "
                f"{'is' if len(taken) == 1 else 'are'} not owned by this CanaryApp; the reconciler changes "
                "nothing until the name is free: rename the CanaryApp, or rename or delete that object",
                retry_after=NAME_CONFLICT_RETRY_SECONDS,
            )

    def not_ours(
        self, namespace: str, name: str, uid: str, routers: Iterable[Router]
    ) -> list[tuple[str, str]]:
        """(kind, name) of every object the stack may declare or delete (with the objects of `routers`) that
        exists without this CanaryApp's owner reference."""
        return [
            (ref.kind, ref.name)
            for ref in owned_objects(name, routers, with_canary=True, autoscaled=True, with_baseline=True)
            if not is_ours(self.cluster.owner_uids(namespace, ref), uid)
        ]
