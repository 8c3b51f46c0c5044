"""Pulumi's own mocks, recording what a program declares: each resource's inputs and how it was registered
(its URN, dependencies and provider, which decide whether an existing stack sees a change or a replacement).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime.mocks import MockMonitor

PROJECT, STACK = "canaryapp", "team-a.shop"


@dataclass(frozen=True)
class Registration:
    urn: str
    dependencies: frozenset[str]
    provider: str


class Recorder(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        # By logical name: the resource's type token and its inputs.
        self.resources: dict[str, dict[str, Any]] = {}
        self.registrations: dict[str, Registration] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources[args.name] = {"type": args.typ, **args.inputs}
        return f"{args.name}-id", args.inputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


class _RecordingMonitor(MockMonitor):
    def __init__(self, recorder: Recorder) -> None:
        super().__init__(recorder)
        self.recorder = recorder

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - the monitor's gRPC method
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.recorder.registrations[request.name] = Registration(
                response.urn, frozenset(request.dependencies), request.provider
            )
        return response


def urn(type_token: str, name: str) -> str:
    """The URN the mock monitor gives a resource declared at the top of the program: its logical name and type
    (qualified with the root stack's, which the engine leaves out) under no other parent."""
    return f"urn:pulumi:{STACK}::{PROJECT}::pulumi:pulumi:Stack${type_token}::{name}"


@contextmanager
def recording() -> Iterator[Recorder]:
    saved = pulumi.runtime.settings.SETTINGS
    recorder = Recorder()
    pulumi.runtime.set_mocks(
        recorder, project=PROJECT, stack=STACK, preview=False, monitor=_RecordingMonitor(recorder)
    )
    try:
        yield recorder
    finally:
        pulumi.runtime.settings.SETTINGS = saved


def run(declare: Callable[[], None], recorder: Recorder) -> dict[str, dict[str, Any]]:
    """Runs `declare` as a Pulumi program under the mocks and returns what `recorder` saw declared."""

    @pulumi.runtime.test
    def program() -> pulumi.Output[None]:
        declare()
        return pulumi.Output.from_input(None)

    program()
    return recorder.resources
