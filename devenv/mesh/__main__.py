"""`python -m devenv.mesh`: the local mesh on its own, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import tempfile
import threading
from pathlib import Path

import devenv.mesh
from devenv.mesh.cluster import ROUTERS, GatewayController, LocalMesh
from devenv.mesh.proxy import METRICS_PATH
from reconciler import logs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devenv.mesh", description=devenv.mesh.__doc__.splitlines()[0]
    )
    parser.add_argument("--kubeconfig", required=True, type=Path, help="kubeconfig of the cluster to watch")
    parser.add_argument("--namespace", default="default", help="namespace of the route")
    parser.add_argument("--route", required=True, help="name of the VirtualService or HTTPRoute to follow")
    parser.add_argument(
        "--router",
        choices=ROUTERS,
        default="istio",
        help="follow a VirtualService (istio) or an HTTPRoute (gateway-api: also runs the Gateway API "
        "controller that writes the local Gateways' and routes' status)",
    )
    parser.add_argument("--port", type=int, default=0, help="proxy port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--rate", type=float, default=20.0, help="generated requests per second (0: none)")
    parser.add_argument(
        "--nothello-fraction", type=float, default=0.0, help="share of them sent to /nothello"
    )
    parser.add_argument("--heavy-fraction", type=float, default=0.0, help="share of them sent to /heavy")
    parser.add_argument("--workdir", type=Path, help="folder for backend logs (default: a temporary folder)")
    args = parser.parse_args(argv)
    logs.configure()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="local-mesh-"))
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    controller = GatewayController(args.kubeconfig) if args.router == "gateway-api" else None
    mesh = LocalMesh(
        args.kubeconfig,
        args.namespace,
        args.route,
        workdir,
        router=args.router,
        listen_port=args.port,
        request_rate=args.rate,
        nothello_fraction=args.nothello_fraction,
        heavy_fraction=args.heavy_fraction,
    )
    if controller is not None:
        controller.start()
    mesh.start()
    try:
        print(f"Local mesh is up: {mesh.url}", flush=True)
        print(f"  metrics: http://{mesh.metrics_address}{METRICS_PATH}", flush=True)
        print(f"  logs: {workdir}", flush=True)
        stopping.wait()
    finally:
        mesh.stop()
        if controller is not None:
            controller.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
