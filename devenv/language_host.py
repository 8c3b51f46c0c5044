"""A local stand-in for Pulumi's Python language host (`pulumi-language-python`), for `pulumi preview`.

The real host is a Go program in the pulumi repository, but the Go module proxy does not serve its module
(every version answers 403), so it cannot be built here. This stand-in serves the same gRPC
LanguageRuntime with the Python SDK's own server (the one the Automation API uses for inline programs)
and runs the project's `main` folder's `__main__.py`. `make tools` links it as
`.tools/bin/pulumi-language-python`;
on a machine with the standard Pulumi distribution the real host is used and this file plays no part.
"""

from __future__ import annotations

import contextlib
import runpy
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
from pulumi.automation._server import LanguageServer
from pulumi.runtime.proto import language_pb2_grpc


class ProjectLanguageServer(LanguageServer):
    """Runs `<program directory>/__main__.py` for each Run request."""

    def __init__(self) -> None:
        super().__init__(program=self._run_main)
        self._main = Path.cwd()

    def _run_main(self) -> None:
        sys.path.insert(0, str(self._main))
        runpy.run_path(str(self._main / "__main__.py"), run_name="__main__")

    def Run(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        info = request.info
        directory = info.program_directory or request.program or request.pwd
        self._main = Path(directory)
        if info.entry_point and info.entry_point != ".":
            entry = Path(directory) / info.entry_point
            self._main = entry if entry.is_dir() else entry.parent
        return super().Run(request, context)  # type: ignore[no-untyped-call]


def main() -> None:
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(ProjectLanguageServer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # the engine interrupts its plugins when done with them
        server.wait_for_termination()
    server.stop(0)


if __name__ == "__main__":
    main()
