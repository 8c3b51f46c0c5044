"""tools/pip_settings.py: pip's index settings handed to uv (`make venv`) in uv's own variables."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from devenv.processes import REPO_ROOT

SCRIPT = REPO_ROOT / "tools" / "pip_settings.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pip_settings", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_pip_setting_lands_in_the_uv_variable_with_uvs_separator() -> None:
    settings = {
        "index-url": "https://mirror.invalid/simple",
        "extra-index-url": "https://a.invalid/simple\nhttps://b.invalid/simple",
        "find-links": "/srv/wheels /opt/wheels",
        "trusted-host": "a.invalid b.invalid",
        "default-timeout": "180",
        "cert": "/etc/ssl/certs/ca-certificates.crt",
        "proxy": "http://proxy.invalid:3128",
        "disable-pip-version-check": "1",
    }
    assert load().uv_environment(settings) == {
        "UV_INDEX_URL": "https://mirror.invalid/simple",
        "UV_EXTRA_INDEX_URL": "https://a.invalid/simple https://b.invalid/simple",
        "UV_FIND_LINKS": "/srv/wheels,/opt/wheels",
        "UV_INSECURE_HOST": "a.invalid b.invalid",
        "UV_HTTP_TIMEOUT": "180",
        "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
        "HTTPS_PROXY": "http://proxy.invalid:3128",
        "HTTP_PROXY": "http://proxy.invalid:3128",
    }


def test_nothing_configured_leaves_uv_on_its_defaults() -> None:
    assert load().uv_environment({}) == {}


def test_uv_asks_the_index_pip_is_configured_with(tmp_path: Path) -> None:
    """A pip index on a loopback port nothing listens on: uv, run through the script, fails there."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("UV_", "PIP_"))}
    environment |= {
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": f"http://127.0.0.1:{port}/simple",
        "UV_CACHE_DIR": str(tmp_path / "cache"),
        "UV_HTTP_RETRIES": "0",
    }
    target = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", target], check=True)
    install = ["uv", "pip", "install", "--python", target / "bin" / "python", "no-such-pkg"]
    result = subprocess.run(
        [sys.executable, SCRIPT, *install],
        check=False,
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert result.returncode != 0
    assert f"127.0.0.1:{port}" in result.stderr, result.stderr
