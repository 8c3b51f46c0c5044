"""A real Prometheus server (Debian's package) on a free loopback port, scraping the targets it is given.

It can also guard its own API as production ones often do — TLS from a CA of its own and basic auth, through
Prometheus' `--web.config.file` — so tests exercise a client that must send credentials and trust a CA.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from devenv.pki import CertificateAuthority, KeyPair
from devenv.processes import ProcessGroup, free_port, tool, wait_until

# bcrypt's lowest cost: Prometheus checks the hash on every request, and these credentials guard nothing real.
_BCRYPT_ROUNDS = 4


class PrometheusServer:
    def __init__(
        self,
        directory: Path,
        targets: dict[str, list[str]],
        scrape_interval: str = "1s",
        metrics_paths: dict[str, str] | None = None,
        port: int = 0,
        *,
        tls: bool = False,
        basic_auth: tuple[str, str] | None = None,
    ) -> None:
        self.directory = directory
        self.targets = targets
        self.metrics_paths = metrics_paths or {}
        self.scrape_interval = scrape_interval
        self.port = port or free_port()
        self.basic_auth = basic_auth
        self.processes = ProcessGroup(directory / "logs")
        self._serving: KeyPair | None = None
        self._client_tls: ssl.SSLContext | None = None
        self.ca_pem: str | None = None
        if tls:
            pki_dir = directory / "pki"
            pki_dir.mkdir(parents=True, exist_ok=True)
            ca = CertificateAuthority(pki_dir, common_name="canaryapp-prometheus-ca")
            self._serving = ca.issue(
                "prometheus", "127.0.0.1", dns_names=("localhost",), ip_addresses=("127.0.0.1",), server=True
            )
            self.ca_pem = ca.cert_path.read_text()
            self._client_tls = ssl.create_default_context(cadata=self.ca_pem)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"

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

    def write_web_config(self) -> Path | None:
        """The exporter-toolkit web configuration for TLS and basic auth; None when neither is asked for."""
        web_config: dict[str, Any] = {}
        if self._serving is not None:
            web_config["tls_server_config"] = {
                "cert_file": str(self._serving.cert),
                "key_file": str(self._serving.key),
            }
        if self.basic_auth is not None:
            user, password = self.basic_auth
            password_hash = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=_BCRYPT_ROUNDS))
            web_config["basic_auth_users"] = {user: password_hash.decode()}
        if not web_config:
            return None
        path = self.directory / "web.yml"
        path.write_text(yaml.safe_dump(web_config))
        return path

    def start(self, timeout: float = 60.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.write_config()
        web_config = self.write_web_config()
        self.processes.start(
            "prometheus",
            [
                tool("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=2h",
                *([f"--web.config.file={web_config}"] if web_config is not None else []),
            ],
        )

        def ready() -> bool:
            self.processes.check_alive()
            status, _ = self._get("/-/ready", timeout=2)
            return status == 200

        wait_until(ready, timeout=timeout, what="Prometheus /-/ready")

    def stop(self) -> None:
        self.processes.stop_all()

    def query(self, promql: str) -> list[dict[str, Any]]:
        _, body = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": promql}), timeout=5)
        result: list[dict[str, Any]] = json.loads(body)["data"]["result"]
        return result

    def authorization_header(self) -> dict[str, str]:
        """The header that carries this server's basic-auth credentials; empty when it asks for none."""
        if self.basic_auth is None:
            return {}
        credentials = base64.b64encode(":".join(self.basic_auth).encode()).decode()
        return {"Authorization": f"Basic {credentials}"}

    def _get(self, path_and_query: str, *, timeout: float) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path_and_query, headers=self.authorization_header())
        with urllib.request.urlopen(request, timeout=timeout, context=self._client_tls) as response:
            return int(response.status), response.read()
