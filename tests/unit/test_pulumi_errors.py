"""The Pulumi adapter's error mapping (one table, like httpx's): the Automation API's exceptions to our error
tree, and what each kind of failed step raises."""

from __future__ import annotations

import pytest
from pulumi import automation as auto
from pulumi.automation._cmd import CommandResult

from reconciler.adapters.pulumi.runner import (
    Failure,
    Step,
    _Outcome,
    classify_failure,
    outcome_error,
)
from reconciler.core.errors import PermanentError, StackBusyError, TransientError


def engine(kind: type[auto.errors.CommandError]) -> auto.errors.CommandError:
    return kind(CommandResult(stdout="", stderr="error: boom", code=1))


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
    ("failure", "raised"),
    [
        pytest.param(Failure.BUSY, StackBusyError, id="busy"),
        pytest.param(Failure.PERMANENT, PermanentError, id="permanent"),
        pytest.param(Failure.TRANSIENT, TransientError, id="transient"),
    ],
)
def test_outcome_error(failure: Failure, raised: type[Exception]) -> None:
    error = outcome_error(Step.UP, "ns.web", _Outcome({}, 1.0, failure, "error: denied"))
    assert type(error) is raised
    assert "ns.web" in str(error)
    assert "error: denied" in str(error)


def test_a_step_that_succeeded_raises_nothing() -> None:
    assert outcome_error(Step.DESTROY, "ns.web", _Outcome({"delete": 5}, 1.0)) is None
