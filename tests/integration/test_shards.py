"""Two shards on one cluster, each with its own Lease, keeping Pulumi state in a real S3 server (versitygw):
each shard promotes only the CanaryApps its label selector picks, every stack's state lands in the bucket,
and when shard a's leader is killed mid-rollout its standby clears the stale lock in the bucket and finishes
the rollout, while shard b's leader never noticed."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from devenv.cluster import LocalCluster
from devenv.exporter import ControlledExporter
from devenv.prometheus import PrometheusServer
from devenv.reconciler_process import ReconcilerProcess
from devenv.s3 import S3Server
from reconciler.core.names import stack_name
from tests.integration.helpers import Apps, canary_app, error_query, wait_for

pytestmark = pytest.mark.integration

SHARD_LABEL = "canary.atze.io/shard"


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    server = S3Server(tmp_path / "s3")
    server.start()
    yield server
    server.stop()


def lease_holders(kube: kubernetes.client.ApiClient, namespace: str) -> dict[str, str]:
    """Lease name -> holder, of the Leases with a holder in the namespace."""
    leases = kubernetes.client.CoordinationV1Api(kube).list_namespaced_lease(namespace).items
    return {lease.metadata.name: lease.spec.holder_identity for lease in leases if lease.spec.holder_identity}


def two_leaders(kube: kubernetes.client.ApiClient, namespace: str) -> dict[str, str] | None:
    holders = lease_holders(kube, namespace)
    return holders if len(holders) == 2 else None


def log_entries(process: ReconcilerProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in process.log().splitlines() if line.startswith("{")]


def assert_states_in_the_bucket(s3: S3Server, namespace: str, names: tuple[str, ...]) -> None:
    """Every stack's state is an object in the bucket (and a file in the server's posix folder); each update's
    history entry keeps a copy of its checkpoint, and no second copy goes to backups/."""
    keys = s3.keys(".pulumi/stacks/")
    history = s3.keys(".pulumi/history/")
    for name in names:
        stack = stack_name(namespace, name)
        (key,) = [key for key in keys if key.endswith(f"/{stack}.json")]
        assert (s3.data / s3.bucket / key).is_file()
        assert [key for key in history if f"/{stack}/" in key and key.endswith(".checkpoint.json")], history
    assert s3.keys(".pulumi/backups/") == []


def test_shards_promote_only_their_own_canaryapps_and_a_standby_takes_its_shard_over(
    kube: kubernetes.client.ApiClient,
    namespace: str,
    cluster: LocalCluster,
    exporter: ControlledExporter,
    prometheus: PrometheusServer,
    s3: S3Server,
    tmp_path: Path,
) -> None:
    def replica(shard: str, identity: str) -> ReconcilerProcess:
        # Each process has its own state folder: the stacks are shared through the bucket only.
        return ReconcilerProcess(
            cluster.kubeconfig,
            namespace,
            tmp_path / identity,
            "--leader-elect",
            f"--lease-namespace={namespace}",
            f"--identity={identity}",
            f"--shard-selector={SHARD_LABEL}={shard}",
            f"--backend-url={s3.backend_url}",
            "--log-format=json",
            environment=s3.environment(),
        )

    a_leader, a_standby, b_leader = replica("a", "a-1"), replica("a", "a-2"), replica("b", "b-1")
    processes = (a_leader, a_standby, b_leader)
    apps = Apps(kube, namespace)
    try:
        a_leader.start()
        b_leader.start()
        holders = wait_for(lambda: two_leaders(kube, namespace), 60, "a leader in each shard")
        assert sorted(holders.values()) == ["a-1", "b-1"]
        lease_a = next(name for name, holder in holders.items() if holder == "a-1")
        a_standby.start()

        for name, shard in (("web-a", "a"), ("web-b", "b")):
            body = canary_app(name, "app:v1", error_query(namespace, name), prometheus.url)
            apps.create({**body, "metadata": {"name": name, "labels": {SHARD_LABEL: shard}}})
        for name in ("web-a", "web-b"):
            wait_for(lambda name=name: apps.phase_is(name, "Ready"), 180, f"{name} Ready")
            apps.patch_spec(name, image="app:v2")
        for name in ("web-a", "web-b"):
            status = wait_for(lambda name=name: apps.phase_is(name, "Succeeded"), 180, f"{name} promoted")
            assert status["primaryImage"] == "app:v2"

        assert_states_in_the_bucket(s3, namespace, ("web-a", "web-b"))

        # Each leader worked on its own shard's CanaryApp only; the standby on none.
        for process, mine, other in ((a_leader, "web-a", "web-b"), (b_leader, "web-b", "web-a")):
            metrics = process.metrics()
            assert (
                metrics.get(f'canaryapp_phase{{name="{mine}",namespace="{namespace}",phase="Succeeded"}}')
                == 1
            )
            assert not [series for series in metrics if f'name="{other}"' in series]
            assert mine in process.log()
            assert other not in process.log()
        assert not [series for series in a_standby.metrics() if 'name="web-' in series]

        # Shard a's leader dies mid-rollout, leaving a lock on its stack in the bucket.
        apps.patch_spec("web-a", image="app:v3")
        wait_for(lambda: apps.status("web-a").get("canaryImage") == "app:v3" or None, 60, "web-a canary")
        a_leader.kill()
        stale_lock = f".pulumi/locks/organization/canaryapp/{stack_name(namespace, 'web-a')}/dead.json"
        lock = {
            "pid": 1,
            "username": "a-1",
            "hostname": "killed",
            "timestamp": datetime.datetime.now(datetime.UTC),
        }
        s3.put(stale_lock, json.dumps(lock, default=str).encode())
        assert lease_holders(kube, namespace)[lease_a] == "a-1", (
            "the standby took over before the lock was left"
        )

        wait_for(lambda: lease_holders(kube, namespace).get(lease_a) == "a-2" or None, 90, "a-2 takes over")
        status = wait_for(lambda: apps.phase_is("web-a", "Succeeded"), 180, "web-a v3 promoted by a-2")
        assert status["primaryImage"] == "app:v3"
        assert stale_lock not in s3.keys(".pulumi/locks/")
        started = [
            entry for entry in log_entries(a_standby) if entry["message"] == "Started CanaryApp reconciler"
        ]
        assert started
        assert started[-1]["cleared_locks"] >= 1
        assert "s3://" in started[-1]["backend"]
        assert s3.credentials.secret_key not in a_standby.log()

        # Shard b kept its leader and its CanaryApp throughout.
        assert lease_holders(kube, namespace)[next(n for n, h in holders.items() if h == "b-1")] == "b-1"
        assert apps.status("web-b")["primaryImage"] == "app:v2"
        assert "web-a" not in b_leader.log()
    finally:
        for process in processes:
            process.stop()
