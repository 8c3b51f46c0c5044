"""What the stacks' secrets provider costs a `pulumi` run, in CPU (user+system), with no cluster.

    .venv/bin/python bench/secrets_cost.py [--runs 5]

Prints, as the median of `--runs` runs:

1. the key derivation alone: PBKDF2-SHA256 of 1,000,000 rounds, as Pulumi's passphrase secrets manager runs
   it in every CLI run that opens a stack's secrets (here through OpenSSL, in this process);
2. for each secrets setup — the passphrase, and the step workers' key service (`hashivault://` on a local
   socket, `reconciler/adapters/pulumi/keys.py`) — the CPU of the `pulumi` process (and its children) of:
   `pulumi up` of an inline program with one secret output and no resources, run as a step runs it (the
   `up` alone: the fixed part of every step's `up`, CLI start, secrets manager, engine, checkpoint),
   `stack select` (once per stack and worker), and `stack output --show-secrets` (what the Automation API
   runs twice more after a plain `stack.up`); and this process's CPU per `up` (the inline program and the
   Automation API, and with the key service its calls);
3. the key service's own CPU per transit call (a decrypt, as a run makes two), served by a separate process.

The figures are CPU, not wall: on a loaded machine wall time measures the neighbours. The state is checked
too: the secret output is stored encrypted, never in plain text.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pulumi
from pulumi import automation as auto

from devenv.processes import tools_bin
from reconciler.adapters.pulumi.compat import step_stack
from reconciler.adapters.pulumi.keys import BUILTIN_URL, PBKDF2_ROUNDS, KeyService

SECRET = "bench-secret-value"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def program() -> None:
    pulumi.export("token", pulumi.Output.secret(SECRET))


def derivation_cpu(runs: int) -> float:
    spent = []
    for _ in range(runs):
        before = self_cpu()
        hashlib.pbkdf2_hmac("sha256", b"bench-passphrase", os.urandom(8), PBKDF2_ROUNDS, 32)
        spent.append(self_cpu() - before)
    return statistics.median(spent)


def measure(setup: str, root: Path, runs: int) -> dict[str, float]:
    state, work = root / setup / "state", root / setup / "work"
    state.mkdir(parents=True)
    work.mkdir(parents=True)
    service = KeyService.for_work_root("bench-passphrase", root / setup) if setup != "passphrase" else None
    environment = {
        "PULUMI_BACKEND_URL": f"file://{state}",
        "PULUMI_HOME": str(root / "home"),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_CONFIG_PASSPHRASE": "bench-passphrase",
        **(service.environment() if service is not None else {}),
    }
    workspace = auto.LocalWorkspace(
        work_dir=str(work),
        pulumi_home=str(root / "home"),
        env_vars=environment,
        secrets_provider=BUILTIN_URL if service is not None else "passphrase",
        program=program,
        project_settings=auto.ProjectSettings(
            name="bench", runtime="python", backend=auto.ProjectBackend(url=f"file://{state}")
        ),
    )
    # As a step runs it: the `up` alone, not the two CLI runs the Automation API adds to read the result back.
    stack = step_stack("bench", workspace, create=True)
    stack.up(on_output=lambda _line: None)  # the first run creates the checkpoint
    figures: dict[str, float] = {}

    def cpu_of(name: str, run: Callable[[], object]) -> None:
        spent, served = [], []
        for _ in range(runs):
            before, service_before = children_cpu(), self_cpu()
            started = time.monotonic()
            run()
            spent.append(children_cpu() - before)
            served.append(self_cpu() - service_before)
            figures[f"{name} wall"] = time.monotonic() - started
        figures[name] = statistics.median(spent)
        if name == "pulumi up":
            figures["this process per up (Automation API, program, key service)"] = statistics.median(served)

    cpu_of("pulumi up", lambda: stack.up(on_output=lambda _line: None))
    cpu_of("pulumi stack select", lambda: workspace.select_stack("bench"))
    cpu_of("pulumi stack output --show-secrets", auto.Stack.select("bench", workspace).outputs)
    text = (state / ".pulumi" / "stacks" / "bench" / "bench.json").read_text()
    assert SECRET not in text, "the secret output was stored in plain text"
    assert auto.Stack.select("bench", workspace).outputs()["token"].value == SECRET
    if service is not None:
        service.stop()
    return figures


SERVE = """
import json, sys, time
from pathlib import Path
from reconciler.adapters.pulumi.keys import KeyService
service = KeyService.for_work_root("bench-passphrase", Path(sys.argv[1]))
print(json.dumps(service.environment()), flush=True)
time.sleep(600)
"""


def service_call_cpu(root: Path, calls: int) -> float:
    """CPU of a key service process per decrypt call (after one call: the derivation is not counted)."""
    server = subprocess.Popen([sys.executable, "-c", SERVE, str(root)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        environment = json.loads(server.stdout.readline())
        path, token = environment["VAULT_ADDR"].removeprefix("unix://"), environment["VAULT_TOKEN"]

        def call(route: str, body: dict[str, str]) -> dict[str, str]:
            connection = http.client.HTTPConnection("localhost")
            connection.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            connection.sock.connect(path)
            connection.request("PUT", route, json.dumps(body), {"X-Vault-Token": token})
            answer = json.loads(connection.getresponse().read())["data"]
            connection.close()
            return answer  # type: ignore[no-any-return]

        plaintext = base64.b64encode(os.urandom(32)).decode()
        wrapped = call("/v1/transit/encrypt/canaryapp", {"plaintext": plaintext})["ciphertext"]
        before = process_cpu(server.pid)
        for _ in range(calls):
            call("/v1/transit/decrypt/canaryapp", {"ciphertext": wrapped})
        return (process_cpu(server.pid) - before) / calls
    finally:
        server.kill()
        server.wait()


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    os.environ["PATH"] = f"{tools_bin()}:{Path(sys.executable).parent}:{os.environ['PATH']}"
    print(f"PBKDF2-SHA256, {PBKDF2_ROUNDS:,} rounds (OpenSSL): {derivation_cpu(args.runs) * 1000:.0f} CPU-ms")
    with tempfile.TemporaryDirectory(prefix="canaryapp-secrets-") as scratch:
        per_call = service_call_cpu(Path(scratch) / "service", 200)
        print(f"key service, one decrypt call (its own process): {per_call * 1000:.2f} CPU-ms")
        results = {setup: measure(setup, Path(scratch), args.runs) for setup in ("passphrase", "key-service")}
    names = [name for name in results["key-service"] if not name.endswith(" wall")]
    print(f"{'CPU ms, median of ' + str(args.runs):<62}{'passphrase':>12}{'key service':>12}")
    for name in names:
        passphrase = results["passphrase"].get(name)
        left = "" if passphrase is None else f"{passphrase * 1000:.0f}"
        print(f"{name:<62}{left:>12}{results['key-service'][name] * 1000:>12.0f}")


if __name__ == "__main__":
    main()
