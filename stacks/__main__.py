"""`pulumi preview --stack <namespace>.<name>` on the top-level Pulumi.yaml: the next step of one CanaryApp.

It declares, with the same program the reconciler runs, the stack that the reconciler's next decision
implies (see reconciler/dry_run.py), so the preview shows exactly what that step would change.
"""

import pulumi

from reconciler.dry_run import next_step
from stacks.program import declare

step = next_step(pulumi.get_stack())
pulumi.log.info(f"next step: {step.decision.kind}: {step.decision.message}")
declare(step.desired)
