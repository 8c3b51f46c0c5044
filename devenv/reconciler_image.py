"""The reconciler image run as the Deployment of config/ runs its pod, with podman on this machine, against
the local cluster.

`make image` builds the image (tools/image/build.sh); this only runs it. `pod_run()` translates the
Deployment's container into `podman run` options: its command and environment (the Secret's values passed
through podman's own environment, never on its command line), user and groups, read-only root filesystem,
dropped capabilities, no privilege escalation, resource limits, its volumes (the state claim as a folder
with the fsGroup's ownership, emptyDir as tmpfs) and its grace period. A field it does not know how to run
stops it, so the Deployment cannot drift from what the test runs. The kubelet's part is done here too: the
ServiceAccount's token, CA and namespace at the in-cluster paths, and KUBERNETES_SERVICE_HOST/PORT pointing
at the local API server, whose serving certificate covers 127.0.0.1 (devenv/cluster.py). The container
shares the host's network, so it reaches the API server and Prometheus on loopback and serves its probes on
a free port.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devenv.processes import REPO_ROOT
from devenv.reconciler_process import read_metrics

SERVICE_ACCOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
BUILD_SCRIPT = REPO_ROOT / "tools" / "image" / "build.sh"
_QUANTITY_FACTORS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "m": 10**-3,
}


class ImageMissingError(RuntimeError):
    """podman or the reconciler image of the current sources is not there."""


class UnsupportedPodFieldError(ValueError):
    """The Deployment asks for something this translation does not run."""


def podman_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment podman runs with: the project's containers.conf unless CONTAINERS_CONF names one."""
    conf = os.environ.get("CONTAINERS_CONF", str(REPO_ROOT / "tools" / "image" / "containers.conf"))
    return {**os.environ, "CONTAINERS_CONF": conf, **(extra or {})}


def built_image() -> str:
    """The tag of the reconciler image of the current sources (as `make image` names it), if it is built."""
    if shutil.which("podman") is None:
        raise ImageMissingError("podman is not installed: install it, then run `make image`")
    result = subprocess.run(
        [str(BUILD_SCRIPT), "--print-ref"], capture_output=True, text=True, check=False, timeout=60
    )
    if result.returncode != 0:
        raise ImageMissingError(f"{BUILD_SCRIPT} --print-ref failed: {result.stderr.strip()}")
    image = result.stdout.strip()
    exists = subprocess.run(["podman", "image", "exists", image], env=podman_environment(), check=False)
    if exists.returncode != 0:
        raise ImageMissingError(f"the reconciler image {image} is not built: run `make image`")
    return image


def quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity ("1Gi", "250m", "1") as a number."""
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value))
    if match is None or match[2] not in _QUANTITY_FACTORS:
        raise UnsupportedPodFieldError(f"resource quantity {value!r} is not supported")
    return float(match[1]) * _QUANTITY_FACTORS[match[2]]


@dataclass(frozen=True)
class PodRun:
    """`podman run` for one container of a Deployment: options, the command after the image, the environment
    podman passes on by name, the grace period, and the ServiceAccount whose token the kubelet would mount."""

    options: list[str]
    arguments: list[str]
    environment: dict[str, str]
    grace_seconds: int
    service_account: str


def pod_run(
    deployment: dict[str, Any],
    *,
    claims: dict[str, Path],
    secrets: dict[tuple[str, str], str],
    command_overrides: dict[str, str],
) -> PodRun:
    """Translates the Deployment's only container. `claims` maps a PersistentVolumeClaim to the folder that
    plays it; `secrets` maps (Secret, key) to its value; `command_overrides` replaces `--flag=value` arguments
    of the command (a flag it does not have is appended)."""
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = [*container.get("command", []), *container.get("args", [])]
    if not command:
        raise UnsupportedPodFieldError("the container has no command: the image's own would run")
    for flag, value in command_overrides.items():
        at = [index for index, argument in enumerate(command) if argument.startswith(f"{flag}=")]
        if at:
            command[at[0]] = f"{flag}={value}"
        else:
            command.append(f"{flag}={value}")
    options = [f"--entrypoint={command[0]}"]
    options += _security_options(pod.get("securityContext", {}), container.get("securityContext", {}))
    options += _limit_options(container.get("resources", {}).get("limits", {}))
    options += _volume_options(pod, container, claims)
    environment = _environment(deployment["metadata"]["namespace"], container.get("env", []), secrets)
    options += [f"--env={name}" for name in environment]
    return PodRun(
        options=options,
        arguments=command[1:],
        environment=environment,
        grace_seconds=int(pod.get("terminationGracePeriodSeconds", 30)),
        service_account=pod.get("serviceAccountName", "default"),
    )


def _security_options(pod_context: dict[str, Any], context: dict[str, Any]) -> list[str]:
    user = context.get("runAsUser", pod_context.get("runAsUser"))
    group = context.get("runAsGroup", pod_context.get("runAsGroup", user))
    if user is None or (context.get("runAsNonRoot") and int(user) == 0):
        raise UnsupportedPodFieldError("the container must name a non-root runAsUser")
    options = [f"--user={user}:{group}"]
    if "fsGroup" in pod_context:
        options.append(f"--group-add={pod_context['fsGroup']}")
    if context.get("readOnlyRootFilesystem"):
        # Only the volumes are writable, as in the pod (podman would add tmpfs on /run and /var/tmp).
        options += ["--read-only", "--read-only-tmpfs=false"]
    if context.get("allowPrivilegeEscalation") is False:
        options.append("--security-opt=no-new-privileges")
    capabilities = context.get("capabilities", {})
    options += [f"--cap-drop={name.lower()}" for name in capabilities.get("drop", [])]
    options += [f"--cap-add={name.lower()}" for name in capabilities.get("add", [])]
    seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {"type": "RuntimeDefault"}))
    if seccomp.get("type") != "RuntimeDefault":
        raise UnsupportedPodFieldError(f"seccompProfile {seccomp} is not supported (podman's default only)")
    return options


def _limit_options(limits: dict[str, Any]) -> list[str]:
    options = []
    if "memory" in limits:
        options.append(f"--memory={int(quantity(limits['memory']))}b")
    if "cpu" in limits:
        options.append(f"--cpus={quantity(limits['cpu']):g}")
    return options


def _volume_options(pod: dict[str, Any], container: dict[str, Any], claims: dict[str, Path]) -> list[str]:
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    options = []
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        read_only = ":ro" if mount.get("readOnly") else ""
        if "persistentVolumeClaim" in volume:
            folder = claims[volume["persistentVolumeClaim"]["claimName"]]
            _give_to_group(folder, pod.get("securityContext", {}).get("fsGroup"))
            options.append(f"--volume={folder}:{mount['mountPath']}{read_only}")
        elif "emptyDir" in volume:
            options.append(f"--tmpfs={mount['mountPath']}")
        else:
            raise UnsupportedPodFieldError(f"volume {volume} is not supported (claims and emptyDir only)")
    return options


def _give_to_group(folder: Path, fs_group: int | None) -> None:
    """What the kubelet does to a volume for the pod's fsGroup: the group owns it, new files inherit it."""
    folder.mkdir(parents=True, exist_ok=True)
    if fs_group is None:
        return
    if os.geteuid() == 0:
        os.chown(folder, -1, fs_group)
    else:
        subprocess.run(["podman", "unshare", "chgrp", str(fs_group), str(folder)], check=True)
    folder.chmod(0o2775)


def owner_in_container(path: Path) -> int:
    """The user id that owns `path` as a container sees it (rootless podman maps ids to subordinate ones)."""
    if os.geteuid() == 0:
        return path.stat().st_uid
    shown = subprocess.run(
        ["podman", "unshare", "stat", "--format=%u", str(path)], capture_output=True, text=True, check=True
    )
    return int(shown.stdout)


def _environment(
    namespace: str, variables: list[dict[str, Any]], secrets: dict[tuple[str, str], str]
) -> dict[str, str]:
    environment: dict[str, str] = {}
    for variable in variables:
        name = variable["name"]
        source = variable.get("valueFrom", {})
        if "value" in variable:
            environment[name] = str(variable["value"])
        elif source.get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            environment[name] = namespace
        elif "secretKeyRef" in source:
            reference = source["secretKeyRef"]
            value = secrets.get((reference["name"], reference["key"]))
            if value is not None:
                environment[name] = value
            elif not reference.get("optional", False):
                raise UnsupportedPodFieldError(f"{name}: no value for Secret key {reference}")
        else:
            raise UnsupportedPodFieldError(f"environment variable {variable} is not supported")
    return environment


def write_service_account(folder: Path, token: str, ca_cert: Path, namespace: str) -> Path:
    """The files the kubelet mounts at SERVICE_ACCOUNT_PATH, readable by the container's user."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "token").write_text(token)
    shutil.copyfile(ca_cert, folder / "ca.crt")
    (folder / "namespace").write_text(namespace)
    for path in (folder / "token", folder / "ca.crt", folder / "namespace"):
        path.chmod(0o644)
    folder.chmod(0o755)
    return folder


class ReconcilerContainer:
    """One `podman run --rm` of the image in the foreground, its output in a log file. `stop()` is what the
    kubelet does at a pod's deletion: SIGTERM, SIGKILL after the grace period."""

    def __init__(self, image: str, run: PodRun, *, name: str, api_port: int, log_path: Path) -> None:
        self.image = image
        self.run = run
        self.name = name
        self.api_port = api_port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, service_account_folder: Path) -> None:
        kubelet = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(self.api_port)}
        options = [
            f"--name={self.name}",
            # The pod's name is its hostname, and the reconciler's Lease identity.
            f"--hostname={self.name}",
            "--rm",
            "--pull=never",
            "--network=host",
            f"--volume={service_account_folder}:{SERVICE_ACCOUNT_PATH}:ro",
            *[f"--env={name}" for name in kubelet],
            *self.run.options,
        ]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            ["podman", "run", *options, self.image, *self.run.arguments],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=podman_environment({**self.run.environment, **kubelet}),
        )
        log.close()

    @property
    def metrics_url(self) -> str:
        """The base URL of the metrics and probe server (--metrics-address)."""
        flag = "--metrics-address="
        address = next(argument for argument in self.run.arguments if argument.startswith(flag))
        return f"http://{address.removeprefix(flag)}"

    def get(self, path: str) -> tuple[int, str]:
        """GET `path` of the metrics server: the status and body, also for an error status; status 0 and
        the reason while nothing listens."""
        try:
            with urllib.request.urlopen(self.metrics_url + path, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except urllib.error.URLError as error:
            return 0, str(error.reason)

    def metrics(self) -> dict[str, float]:
        return read_metrics(self.metrics_url + "/metrics")

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def stop(self) -> int:
        """SIGTERM, SIGKILL after the grace period; the container's exit code (137 when it was killed)."""
        assert self.process is not None
        subprocess.run(
            ["podman", "stop", f"--time={self.run.grace_seconds}", self.name],
            env=podman_environment(),
            capture_output=True,
            check=False,
            timeout=self.run.grace_seconds + 60,
        )
        return self.process.wait(timeout=60)

    def remove(self) -> None:
        """Removes the container whatever its state (a failed test's cleanup)."""
        subprocess.run(
            ["podman", "rm", "--force", "--ignore", "--time=0", self.name],
            env=podman_environment(),
            capture_output=True,
            check=False,
            timeout=60,
        )
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
