"""`canaryapp-dev`: the local environment for humans: `cluster` (a local cluster until Ctrl-C), the demo."""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import threading
import time
from pathlib import Path

from devenv.cluster import running
from reconciler.core.names import Router


def cluster_command(args: argparse.Namespace) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    directory = Path(args.dir).resolve() if args.dir else None
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    with running(directory) as cluster:
        cluster.apply_project_crds()
        print(f"Local cluster is up: {cluster.server}", flush=True)
        print(f"  export KUBECONFIG={cluster.kubeconfig}", flush=True)
        print(f"  logs: {cluster.processes.log_dir}", flush=True)
        print("Press Ctrl-C to stop it.", flush=True)
        stop.wait()
    return 0


def demo_command(args: argparse.Namespace) -> int:
    from devenv import demo  # noqa: PLC0415 - only the demo commands need the traffic layer

    if args.command == "demo":
        workdir = Path(args.dir).resolve() if args.dir else demo.DEMO_DIR / f"demo-{int(time.time())}"
        code = demo.run_demo(workdir, Router(args.router))
        if code == 0 and not args.dir:
            shutil.rmtree(workdir, ignore_errors=True)
        return code
    if args.command == "demo-up":
        return demo.demo_up()
    if args.command == "demo-down":
        return demo.demo_down()
    return demo.serve_environment(Path(args.dir).resolve())


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("httpx", "httpcore", "kubernetes", "urllib3", "devenv.mesh"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(prog="canaryapp-dev", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    cluster = commands.add_parser("cluster", help="run a local cluster (with the CanaryApp and Istio CRDs)")
    cluster.add_argument("--dir", help="folder for the cluster's files (default: a temporary folder)")
    cluster.set_defaults(handler=cluster_command)
    run_demo = commands.add_parser("demo", help="tell the whole canary story with real traffic, then stop")
    run_demo.add_argument("--dir", help="keep the demo's files (logs) in this folder")
    run_demo.add_argument(
        "--router",
        choices=[router.value for router in Router],
        default=Router.ISTIO.value,
        help="spec.router",
    )
    commands.add_parser("demo-up", help="start the demo environment in the background")
    commands.add_parser("demo-down", help="stop the demo environment")
    serve = commands.add_parser("demo-serve", help="(used by demo-up) run the demo environment until SIGTERM")
    serve.add_argument("--dir", required=True)
    for name in ("demo", "demo-up", "demo-down", "demo-serve"):
        commands.choices[name].set_defaults(handler=demo_command)
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
