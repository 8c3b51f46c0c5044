"""The development Prometheus guarded like production ones: TLS from its own CA and basic auth, through
Prometheus' web configuration; without them it stays the plain server the other tests use."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml

from devenv.exporter import ControlledExporter
from devenv.processes import wait_until
from devenv.prometheus import PrometheusServer

USER, PASSWORD = "canary", "correct horse"


def test_plain_server_writes_no_web_configuration(tmp_path: Path) -> None:
    server = PrometheusServer(tmp_path, {"controlled": ["127.0.0.1:1"]}, port=19090)
    assert server.url == "http://127.0.0.1:19090"
    assert server.ca_pem is None
    assert server.basic_auth is None
    assert server.authorization_header() == {}
    assert PrometheusServer(tmp_path, {}, basic_auth=(USER, PASSWORD)).authorization_header() == basic(
        USER, PASSWORD
    )
    assert server.write_web_config() is None
    assert not (tmp_path / "web.yml").exists()


def test_web_configuration_holds_a_bcrypt_hash_and_the_serving_pair(tmp_path: Path) -> None:
    server = PrometheusServer(tmp_path, {}, tls=True, basic_auth=(USER, PASSWORD))
    path = server.write_web_config()
    assert path is not None
    web_config = yaml.safe_load(path.read_text())
    password_hash = web_config["basic_auth_users"][USER]
    assert PASSWORD not in path.read_text()
    assert bcrypt.checkpw(PASSWORD.encode(), password_hash.encode())
    assert not bcrypt.checkpw(b"wrong", password_hash.encode())
    tls = web_config["tls_server_config"]
    assert Path(tls["cert_file"]).parent == tmp_path / "pki"
    assert Path(tls["key_file"]).exists()
    assert server.url.startswith("https://127.0.0.1:")
    assert server.ca_pem is not None
    assert server.ca_pem.startswith("-----BEGIN CERTIFICATE-----")


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    exporter = ControlledExporter()
    exporter.set("canary_probe", {"probe": "auth"}, 1)
    exporter.start()
    server = PrometheusServer(
        tmp_path_factory.mktemp("prometheus"),
        {"controlled": [exporter.address]},
        tls=True,
        basic_auth=(USER, PASSWORD),
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()
        exporter.stop()


def fetch(url: str, *, ca_pem: str | None, headers: dict[str, str]) -> dict[str, Any]:
    context = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=5, context=context) as response:
        body: dict[str, Any] = json.load(response)
        return body


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_guarded_server_answers_only_with_credentials_over_its_ca(guarded: PrometheusServer) -> None:
    url = f"{guarded.url}/api/v1/query?query=up"

    with pytest.raises(urllib.error.HTTPError) as no_credentials:
        fetch(url, ca_pem=guarded.ca_pem, headers={})
    assert no_credentials.value.code == 401

    with pytest.raises(urllib.error.HTTPError) as wrong_password:
        fetch(url, ca_pem=guarded.ca_pem, headers=basic(USER, "wrong"))
    assert wrong_password.value.code == 401

    answer = fetch(url, ca_pem=guarded.ca_pem, headers=basic(USER, PASSWORD))
    assert answer["status"] == "success"
    assert answer["data"]["resultType"] == "vector"

    with pytest.raises(urllib.error.URLError) as untrusted:
        fetch(url, ca_pem=None, headers=basic(USER, PASSWORD))
    assert isinstance(untrusted.value.reason, ssl.SSLCertVerificationError)


def test_guarded_server_helpers_send_credentials_and_trust_the_ca(guarded: PrometheusServer) -> None:
    wait_until(lambda: bool(guarded.query("canary_probe")), timeout=30, what="canary_probe scraped")
    [up] = guarded.query('up{job="controlled"}')
    assert up["value"][1] == "1"
