"""The reconciler's error tree. Every error a user sees names the object, the cause and what to do next.

ReconcileError
├── TransientError(retry_after)   the world may fix itself: retry the pass later
│   ├── StackBusyError            another update holds the Pulumi stack (ConcurrentUpdateError)
│   ├── StepTimeoutError          a `pulumi up`/`destroy` outlived --step-timeout and was killed
│   └── NameConflictError         an object with a derived name exists and is not this CanaryApp's
└── PermanentError                retrying the same input fails the same way: wait for a change
    └── InvalidSpecError          the CanaryApp's spec breaks a rule (names the field and the fix)
"""

from __future__ import annotations


class ReconcileError(Exception):
    """Base of every error a reconcile pass reports."""


class TransientError(ReconcileError):
    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StackBusyError(TransientError):
    pass


class StepTimeoutError(TransientError):
    """Its engine and provider were killed and its stack lock removed: the retry starts from new ones."""


class NameConflictError(TransientError):
    """Retried with backoff: whoever owns the conflicting object may rename or delete it."""


class PermanentError(ReconcileError):
    pass


class InvalidSpecError(PermanentError):
    pass
