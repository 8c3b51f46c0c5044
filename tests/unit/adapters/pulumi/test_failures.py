"""The Pulumi adapter's error mapping (one table, like httpx's): the Automation API's exceptions to our error
tree, and what each kind of failed step raises."""

from __future__ import annotations

import pytest
from pulumi import automation as auto

from reconciler.adapters.pulumi.compat import engine_error
from reconciler.adapters.pulumi.failures import Failure, classify_failure
from reconciler.adapters.pulumi.worker import Outcome, Step
from reconciler.core.errors import PermanentError, StackBusyError, TransientError


def engine(kind: type[auto.errors.CommandError]) -> auto.errors.CommandError:
    return engine_error(kind, "error: boom")


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        pytest.param(engine(auto.errors.ConcurrentUpdateError), Failure.BUSY, id="locked stack"),
        pytest.param(engine(auto.errors.CompilationError), Failure.PERMANENT, id="compilation"),
        pytest.param(engine(auto.errors.InlineSourceRuntimeError), Failure.PERMANENT, id="program error"),
        pytest.param(engine(auto.errors.StackNotFoundError), Failure.TRANSIENT, id="other engine error"),
        pytest.param(engine(auto.errors.CommandError), Failure.TRANSIENT, id="engine error"),
        pytest.param(ValueError("bug"), None, id="not the engine's"),
    ],
)
def test_classify_failure(error: Exception, failure: Failure | None) -> None:
    assert classify_failure(error) is failure


@pytest.mark.parametrize(
    ("failure", "raised", "retry_after"),
    [
        pytest.param(Failure.BUSY, StackBusyError, 5.0, id="busy"),
        pytest.param(Failure.PERMANENT, PermanentError, None, id="permanent"),
        pytest.param(Failure.TRANSIENT, TransientError, 10.0, id="transient"),
    ],
)
def test_outcome_error(failure: Failure, raised: type[Exception], retry_after: float | None) -> None:
    error = Outcome({}, 1.0, failure, "error: denied").error(Step.UP, "ns.web")
    assert type(error) is raised
    assert "ns.web" in str(error)
    assert "error: denied" in str(error)
    assert getattr(error, "retry_after", None) == retry_after


def test_a_step_that_succeeded_raises_nothing() -> None:
    assert Outcome({"delete": 5}, 1.0).error(Step.DESTROY, "ns.web") is None


def test_an_engine_error_carries_the_engines_output() -> None:
    assert "error: boom" in str(engine(auto.errors.CommandError))
