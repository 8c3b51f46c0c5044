"""The private Pulumi surface `reconciler.adapters.pulumi.compat` relies on is still there in the pinned
Pulumi: each test names what moved, so an upgrade that changes it fails here rather than in a step."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi.automation
from pulumi import automation as auto

from reconciler.adapters.pulumi import compat


def parameters(function: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    """Names, kinds and defaults (annotations differ in spelling between Pulumi and us)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def test_stack_init_mode_is_still_in_the_private_stack_module() -> None:
    stack_module = importlib.import_module("pulumi.automation._stack")
    mode = getattr(stack_module, "StackInitMode", None)
    assert mode is not None, (
        "pulumi.automation._stack.StackInitMode moved: find where Stack's mode comes from"
    )
    assert {"SELECT", "CREATE_OR_SELECT"} <= set(mode.__members__), (
        f"StackInitMode no longer has SELECT and CREATE_OR_SELECT: {list(mode.__members__)}"
    )


def test_the_stack_constructor_still_takes_the_init_mode() -> None:
    assert [name for name, _kind, _default in parameters(auto.Stack.__init__)] == [
        "self",
        "name",
        "workspace",
        "mode",
    ], f"Stack.__init__ changed: {inspect.signature(auto.Stack.__init__)}"


def test_the_stubbed_stack_methods_keep_the_signatures_they_are_overridden_with() -> None:
    for method in ("outputs", "info"):
        assert parameters(getattr(auto.Stack, method)) == parameters(getattr(compat.StepStack, method)), (
            f"Stack.{method} changed: {inspect.signature(getattr(auto.Stack, method))}"
        )


def test_up_still_reads_its_outputs_and_summary_back_through_the_stubbed_methods() -> None:
    source = inspect.getsource(auto.Stack.up)
    for call in ("self.outputs()", "self.info("):
        assert call in source, (
            f"Stack.up no longer calls {call}: StepStack's stub of it no longer saves a CLI run"
        )


def test_a_command_result_is_still_made_of_the_clis_output_and_exit_code() -> None:
    assert parameters(auto.CommandResult.__init__) == [
        ("self", inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
        ("stdout", inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
        ("stderr", inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
        ("code", inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
    ], f"CommandResult.__init__ changed: {inspect.signature(auto.CommandResult.__init__)}"


def test_the_placeholder_summary_answers_as_a_succeeded_update() -> None:
    summary = compat.StepStack.info(object.__new__(compat.StepStack))
    assert summary is not None
    assert (summary.kind, summary.result) == ("update", "succeeded")
    assert compat.StepStack.outputs(object.__new__(compat.StepStack)) == {}


def test_a_stack_is_made_with_the_mode_the_step_asks_for(monkeypatch: Any) -> None:
    modes: list[str] = []

    def record(self: auto.Stack, name: str, workspace: Any, mode: Any) -> None:
        modes.append(mode.value)

    monkeypatch.setattr(auto.Stack, "__init__", record)
    assert isinstance(compat.step_stack("ns.web", None, create=True), compat.StepStack)  # type: ignore[arg-type]
    compat.step_stack("ns.web", None, create=False)  # type: ignore[arg-type]
    assert modes == ["create_or_select", "select"]


def test_the_import_contract_forbids_every_private_module_of_the_automation_api() -> None:
    """A private module a Pulumi upgrade adds is one the contract must name too, or it could be imported
    anywhere unnoticed."""
    config = tomllib.loads((Path(__file__).parents[4] / "pyproject.toml").read_text())
    contract = next(
        contract
        for contract in config["tool"]["importlinter"]["contracts"]
        if "pulumi.automation._stack" in contract.get("forbidden_modules", ())
    )
    private = {
        f"pulumi.automation.{module.name}"
        for module in pkgutil.iter_modules(pulumi.automation.__path__)
        if module.name.startswith("_")
    }
    assert set(contract["forbidden_modules"]) == private
