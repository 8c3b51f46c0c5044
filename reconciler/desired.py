"""The stack a CanaryApp's spec and status imply: plain data, handed to the Pulumi program in `stacks/`.

The desired stack follows from the status, never from `spec.image` directly: a new image reaches the
cluster only through the decisions in `decide.py` (canary first, primary at promotion).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from reconciler.model import CanaryAppSpec, CanaryAppStatus
from reconciler.names import stack_name


@dataclass(frozen=True)
class DesiredStack:
    name: str
    namespace: str
    owner_uid: str
    port: int
    replicas: int
    test_replicas: int
    hosts: tuple[str, ...]
    gateways: tuple[str, ...]
    primary_image: str
    canary_image: str | None
    canary_weight: int

    @property
    def primary_weight(self) -> int:
        return 100 - self.canary_weight

    @property
    def stack_name(self) -> str:
        return stack_name(self.namespace, self.name)

    def fingerprint(self) -> str:
        """A hash of everything the program declares: equal fingerprints mean `up` changes nothing."""
        encoded = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
        return hashlib.sha256(encoded).hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DesiredStack:
        data = json.loads(text)
        data["hosts"] = tuple(data["hosts"])
        data["gateways"] = tuple(data["gateways"])
        return cls(**data)


def desired_stack(
    name: str, namespace: str, owner_uid: str, spec: CanaryAppSpec, status: CanaryAppStatus
) -> DesiredStack:
    primary_image = status.primary_image or spec.image
    return DesiredStack(
        name=name,
        namespace=namespace,
        owner_uid=owner_uid,
        port=spec.image_listen_port,
        replicas=spec.replicas,
        test_replicas=spec.test_replicas,
        hosts=spec.service_hosts(name),
        gateways=spec.gateways,
        primary_image=primary_image,
        canary_image=status.canary_image,
        canary_weight=status.canary_weight if status.canary_image else 0,
    )
