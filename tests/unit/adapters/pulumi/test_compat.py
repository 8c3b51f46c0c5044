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


def test_the_sdk_still_sends_its_debug_messages_through_the_log_module() -> None:
    """`drop_sdk_debug_messages` replaces `pulumi.log.debug`: that reaches the SDK's runtime only while its
    modules call `log.debug` on the module (not a `debug` they imported themselves)."""
    runtime = ("pulumi.runtime.resource", "pulumi.runtime.rpc", "pulumi.runtime.stack")
    for name in runtime:
        module = importlib.import_module(name)
        assert getattr(module, "log", None) is pulumi.log, f"{name} no longer calls the SDK's log module"
        assert "log.debug(" in inspect.getsource(module), f"{name} no longer logs through log.debug"
        assert getattr(module, "debug", None) is not pulumi.log.debug, f"{name} imported debug itself"


def test_a_worker_drops_the_sdks_debug_messages_and_keeps_the_others(monkeypatch: Any) -> None:
    sent: list[Any] = []

    class Engine:
        def Log(self, request: Any) -> None:  # noqa: N802 - the engine's RPC
            sent.append(request)

    monkeypatch.setattr(pulumi.log, "debug", pulumi.log.debug)  # restored after the test
    monkeypatch.setattr(pulumi.log, "get_engine", Engine)
    pulumi.log.debug("before")
    compat.drop_sdk_debug_messages()
    pulumi.log.debug("registering resource: ty=kubernetes:apps/v1:Deployment")
    pulumi.log.warn("still sent")
    assert [request.message for request in sent] == ["before", "still sent"]
