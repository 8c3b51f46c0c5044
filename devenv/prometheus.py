"""A real Prometheus server (Debian's package) on a free loopback port, scraping the targets it is given."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from devenv.processes import ProcessGroup, free_port, tool, wait_until


class PrometheusServer:
    def __init__(
        self,
        directory: Path,
        targets: dict[str, list[str]],
        scrape_interval: str = "1s",
        metrics_paths: dict[str, str] | None = None,
        port: int = 0,
    ) -> None:
        self.directory = directory
        self.targets = targets
        self.metrics_paths = metrics_paths or {}
        self.scrape_interval = scrape_interval
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.processes = ProcessGroup(directory / "logs")

    def write_config(self) -> Path:
        config = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "scrape_configs": [
                {
                    "job_name": job,
                    "metrics_path": self.metrics_paths.get(job, "/metrics"),
                    "static_configs": [{"targets": addresses}],
                }
                for job, addresses in self.targets.items()
            ],
        }
        path = self.directory / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        return path

    def start(self, timeout: float = 60.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.write_config()
        self.processes.start(
            "prometheus",
            [
                tool("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=2h",
            ],
        )

        def ready() -> bool:
            self.processes.check_alive()
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)

        wait_until(ready, timeout=timeout, what="Prometheus /-/ready")

    def stop(self) -> None:
        self.processes.stop_all()

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result
