"""`canaryapp-dev`: the local environment for humans: `cluster` (a local cluster until Ctrl-C), the demo."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from devenv.cluster import running
from devenv.processes import REPO_ROOT

CRD_FILE = REPO_ROOT / "crds" / "canary.atze.io_canaryapps.yaml"


def cluster_command(args: argparse.Namespace) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    directory = Path(args.dir).resolve() if args.dir else None
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    with running(directory) as cluster:
        cluster.apply_crd_file(CRD_FILE)
        print(f"Local cluster is up: {cluster.server}", flush=True)
        print(f"  export KUBECONFIG={cluster.kubeconfig}", flush=True)
        print(f"  logs: {cluster.processes.log_dir}", flush=True)
        print("Press Ctrl-C to stop it.", flush=True)
        stop.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(prog="canaryapp-dev", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    cluster = commands.add_parser("cluster", help="run a local cluster (with the CanaryApp and Istio CRDs)")
    cluster.add_argument("--dir", help="folder for the cluster's files (default: a temporary folder)")
    cluster.set_defaults(handler=cluster_command)
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code
