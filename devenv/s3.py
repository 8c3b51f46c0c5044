"""A real S3-compatible server (versitygw's posix backend, built by `make tools`) on a free loopback port,
with one bucket, for Pulumi's own `s3://` backend. Objects are files under `<directory>/data/<bucket>/`."""

from __future__ import annotations

import datetime
import hashlib
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from http import HTTPStatus
from pathlib import Path

from devenv.processes import ProcessGroup, free_port, tool, wait_until
from reconciler.adapters.pulumi.s3 import Credentials, S3Bucket, signed_headers

REGION = "us-east-1"
PUT_ATTEMPTS = 3


class S3Server:
    def __init__(self, directory: Path, bucket: str = "canaryapp-state", port: int = 0) -> None:
        self.directory = directory
        self.bucket = bucket
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.credentials = Credentials(secrets.token_hex(10), secrets.token_hex(20))
        self.processes = ProcessGroup(directory / "logs")

    @property
    def data(self) -> Path:
        """The posix backend's root: one folder per bucket, one file per object."""
        return self.directory / "data"

    @property
    def backend_url(self) -> str:
        """Pulumi's backend URL for the bucket (gocloud.dev's s3blob parameters, as pinned by Pulumi)."""
        return f"s3://{self.bucket}?endpoint={self.url}&use_path_style=true&region={REGION}"

    def environment(self) -> dict[str, str]:
        """What a client process (Pulumi, the reconciler) needs to reach the bucket."""
        return {
            "AWS_ACCESS_KEY_ID": self.credentials.access_key,
            "AWS_SECRET_ACCESS_KEY": self.credentials.secret_key,
            "AWS_REGION": REGION,
        }

    def start(self, timeout: float = 30.0) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        self.processes.start(
            "versitygw",
            [
                tool("versitygw"),
                "--port",
                f"127.0.0.1:{self.port}",
                "--access",
                self.credentials.access_key,
                "--secret",
                self.credentials.secret_key,
                "--region",
                REGION,
                "--health",
                "/health",
                "posix",
                str(self.data),
            ],
        )

        def ready() -> bool:
            self.processes.check_alive()
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return bool(response.status == 200)

        wait_until(ready, timeout=timeout, what="versitygw /health")
        self._create_bucket()

    def _create_bucket(self) -> None:
        self._put(f"{self.url}/{self.bucket}", b"")

    def put(self, key: str, body: bytes) -> None:
        """Writes one object through the S3 API. The posix backend removes a folder once its last object is
        deleted, and a PUT whose final link lands in that folder as it goes is answered 409 Conflict
        (versitygw 1.8.0: ExistingObjectIsDirectory; seen when a test plants a lock while a killed
        reconciler's last `up` deletes its own): the PUT is tried again, three times at most."""
        url = f"{self.url}/{self.bucket}/{urllib.parse.quote(key)}"
        for attempt in range(PUT_ATTEMPTS):
            try:
                self._put(url, body)
                return
            except urllib.error.HTTPError as error:
                if error.code != HTTPStatus.CONFLICT or attempt == PUT_ATTEMPTS - 1:
                    raise
                time.sleep(0.2)

    def _put(self, url: str, body: bytes) -> None:
        headers = signed_headers(
            "PUT",
            url,
            credentials=self.credentials,
            region=REGION,
            now=datetime.datetime.now(datetime.UTC),
            payload_sha256=hashlib.sha256(body).hexdigest(),
            headers={"x-amz-content-sha256": hashlib.sha256(body).hexdigest()},
        )
        request = urllib.request.Request(url, data=body, method="PUT", headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200, f"PUT {url} answered HTTP {response.status}"

    def keys(self, prefix: str = "") -> list[str]:
        """The bucket's keys under `prefix`, listed through the S3 API."""
        bucket = S3Bucket(self.backend_url, environ=self.environment())
        try:
            return sorted(bucket.keys(prefix))
        finally:
            bucket.close()

    def stop(self) -> None:
        self.processes.stop_all()
