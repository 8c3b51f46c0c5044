"""`pulumi preview --stack <namespace>.<name>` on the top-level Pulumi.yaml: the next step of one CanaryApp.

It declares, with the same program the reconciler runs, the stack that the reconciler's next decision
implies (see reconciler/dry_run.py), so the preview shows exactly what that step would change. Its metric
queries are bound by the reconciler's policy: CANARYAPP_ALLOWED_METRIC_URLS as the reconciler has it, else
the default.
"""

import os

import pulumi

from reconciler.core.policy import MetricsPolicy
from reconciler.core.text import printable
from reconciler.dry_run import next_step
from stacks.program import declare

step = next_step(pulumi.get_stack(), MetricsPolicy.configured(None, os.environ))
pulumi.log.info(printable(f"next step: {step.decision.kind}: {step.decision.message}"))
declare(step.desired)
