"""The apply step of a pass: the stack a decision implies goes to the cluster (`stack.up`) or, for a deleted
CanaryApp, leaves it (`destroy`), and only over objects that are provably this CanaryApp's."""

from __future__ import annotations

from reconciler.core.desired import DesiredStack
from reconciler.core.errors import NameConflictError
from reconciler.core.names import owned_objects
from reconciler.core.policy import is_ours
from reconciler.core.ports import ClusterReader, StackRunner, StepReport

NAME_CONFLICT_RETRY_SECONDS = 10.0


class Applier:
    def __init__(self, cluster: ClusterReader, stacks: StackRunner) -> None:
        self.cluster = cluster
        self.stacks = stacks

    def apply(self, uid: str, desired: DesiredStack) -> StepReport:
        """Checks ownership, then runs the step (the stack runner's fence guards the `up` itself)."""
        self.check_ownership(desired.namespace, desired.name, uid)
        return self.stacks.apply(desired)

    def destroy(self, namespace: str, name: str, keep: list[tuple[str, str]]) -> StepReport:
        """Destroys the stack, leaving `keep` (`not_ours`) in the cluster."""
        return self.stacks.destroy(namespace, name, keep)

    def check_ownership(self, namespace: str, name: str, uid: str) -> None:
        """Refuses a step (or the stack's destruction) while any object the stack may declare, change or
        delete exists without this CanaryApp's owner reference.

        Only then may the step's server-side apply force its fields (pulumi.com/patchForce), and a step that
        drops the canary or an autoscaler (or the destruction) delete it: every object it touches is absent or
        provably this CanaryApp's. The canary and the autoscalers are checked whether or not the step declares
        them, since a step that no longer declares them deletes them.
        """
        taken = [
            f"{kind} {namespace}/{object_name}" for kind, object_name in self.not_ours(namespace, name, uid)
        ]
        if taken:
            raise NameConflictError(
                f"{', '.join(taken)} already exist{'s' if len(taken) == 1 else ''} and "
                f"{'is' if len(taken) == 1 else 'are'} not owned by this CanaryApp; the reconciler changes "
                "nothing until the name is free: rename the CanaryApp, or rename or delete that object",
                retry_after=NAME_CONFLICT_RETRY_SECONDS,
            )

    def not_ours(self, namespace: str, name: str, uid: str) -> list[tuple[str, str]]:
        """(kind, name) of every object the stack may declare or delete that exists without this
        CanaryApp's owner reference."""
        return [
            (ref.kind, ref.name)
            for ref in owned_objects(name, with_canary=True, autoscaled=True)
            if not is_ours(self.cluster.owner_uids(namespace, ref), uid)
        ]
