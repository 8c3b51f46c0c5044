"""How a step fails, in one place: the Automation API's exceptions mapped to a kind in one table (as httpx
maps its transports' exceptions), each kind's error in the reconciler's tree (`reconciler.core.errors`), and
the errors of steps the pool stopped.

The kind is what crosses from the worker process (the engine's exceptions do not survive pickling); the error
is made in the reconciler's process, where the step is waited for.
"""

from __future__ import annotations

import enum

from pulumi import automation as auto

from reconciler.core.errors import (
    PermanentError,
    ReconcileError,
    StackBusyError,
    StepTimeoutError,
    TransientError,
)

RETRY_SECONDS = 10.0
BUSY_RETRY_SECONDS = 5.0


class Failure(enum.Enum):
    """How a failed step is retried."""

    BUSY = enum.auto()  # another update holds the stack lock
    PERMANENT = enum.auto()  # the program itself is broken: the same input fails the same way
    TRANSIENT = enum.auto()  # anything else the engine reported: retry later

    def error(self, step: str, stack: str, cause: str) -> ReconcileError:
        """The error a step of `stack` that failed this way raises; `cause` is the engine's (summarized)."""
        match self:
            case Failure.BUSY:
                return StackBusyError(
                    f"stack {stack} is locked by another update; retrying ({cause})",
                    retry_after=BUSY_RETRY_SECONDS,
                )
            case Failure.PERMANENT:
                return PermanentError(f"the Pulumi program for stack {stack} failed: {cause}")
            case Failure.TRANSIENT:
                return TransientError(
                    f"`pulumi {step}` of stack {stack} failed: {cause}", retry_after=RETRY_SECONDS
                )


# The Automation API's exceptions, most specific first.
_FAILURES: tuple[tuple[type[Exception], Failure], ...] = (
    (auto.errors.ConcurrentUpdateError, Failure.BUSY),
    (auto.errors.CompilationError, Failure.PERMANENT),
    (auto.errors.InlineSourceRuntimeError, Failure.PERMANENT),
    (auto.errors.CommandError, Failure.TRANSIENT),
)


def classify_failure(error: Exception) -> Failure | None:
    """The kind of a step's exception; None for an exception that is not the engine's (a bug: re-raised)."""
    return next((kind for exception, kind in _FAILURES if isinstance(error, exception)), None)


# Engine lines that follow any failed update and say nothing about its cause.
_GENERIC_ERRORS = ("error: update failed", "error: Resource monitor has terminated", "error: preview failed")


def summarize_step_error(error: Exception, lines: int = 2) -> str:
    """The engine's error lines about the cause (deduplicated, stable from one attempt to the next), or the
    last lines of its output when it printed none."""
    text = [line.strip() for line in str(error).splitlines() if line.strip()]
    errors = [line[line.index("error:") :] for line in text if "error:" in line]
    causes = list(dict.fromkeys(line for line in errors if not line.startswith(_GENERIC_ERRORS)))
    return " | ".join(causes[:lines] or errors[:lines] or text[-lines:])


def stopped_error(step: str, stack: str, reason: str) -> TransientError:
    """The error of a step the pool stopped (or never started) for `reason`."""
    return TransientError(f"`pulumi {step}` of stack {stack} was stopped: {reason}; the step is retried")


def time_limit(step: str, stack: str, timeout: float) -> str:
    """Why a step that outlived its time limit was stopped (the steps stopped with it give it too)."""
    return f"`pulumi {step}` of stack {stack} took longer than {timeout:g} s (--step-timeout)"


def timed_out_error(limit: str) -> StepTimeoutError:
    return StepTimeoutError(
        f"{limit}: its engine and provider were stopped; the step is retried", retry_after=RETRY_SECONDS
    )
