"""Names of the objects a CanaryApp owns, shared by the program and the reconciler's readiness reads."""

from __future__ import annotations


def primary_name(name: str) -> str:
    return f"{name}-primary"


def canary_name(name: str) -> str:
    return f"{name}-canary"
