"""Query templates: `{{ variable }}` placeholders in a CanaryApp's PromQL, filled in at every check.

Pure and tiny on purpose: the model validates templates with it at admission of the spec, the analysis renders
them, and an unknown variable is an error naming it — never a query that silently matches nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

# name and namespace of the CanaryApp; canary, primary and baseline: its workloads (Deployments; the baseline
# runs only with spec.analysis.baseline); interval: the check interval; window: the time since the last weight
# change, so a rate() sees only the current step's traffic.
VARIABLES = ("name", "namespace", "canary", "primary", "baseline", "interval", "window")
_PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}")


def placeholders(template: str) -> list[str]:
    return _PLACEHOLDER.findall(template)


def unknown_variables(template: str) -> list[str]:
    return [name for name in placeholders(template) if name not in VARIABLES]


def render(template: str, values: Mapping[str, str]) -> str:
    """The query with every placeholder filled in; a template without `{{` is returned as it is."""
    if "{{" not in template:
        return template
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def render_partial(template: str, values: Mapping[str, str]) -> str:
    """The template with the placeholders `values` names filled in and every other left as it is."""
    if "{{" not in template:
        return template
    return _PLACEHOLDER.sub(lambda match: values.get(match.group(1), match.group(0)), template)


def promql_duration(seconds: float) -> str:
    """Seconds as a PromQL duration, rounded up to a whole second (at least 1s)."""
    return f"{max(1, math.ceil(seconds))}s"
