"""Hands this machine's pip index settings to the image build without writing them into the image or the
repository.

The Dockerfile's install step reads pip's configuration from the build secret `pip.conf` and trusts the CA
bundle in the secret `pip-cert`. This writes that pip.conf into a folder the caller owns (and removes) with
the settings this machine's pip uses, as `pip config list` reports them from its configuration files and
PIP_* variables: the index, extra indexes, trusted hosts, proxy, timeout and retries, and the CA bundle
(pointed at the secret's path in the build). Settings that name files or folders of this machine (find-links,
client certificates) do not apply inside the build and are left out. Prints the `podman build` arguments
that pass the secrets, one a line.

    python tools/image/pip_settings.py DIR
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PASSED = ("index-url", "extra-index-url", "trusted-host", "proxy", "timeout", "default-timeout", "retries")
CERT_IN_BUILD = "/run/secrets/pip-cert"


def configured() -> dict[str, str]:
    """pip's effective settings by option name; PIP_* variables win over configuration files."""
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    from_files: dict[str, str] = {}
    from_environment: dict[str, str] = {}
    for line in listing.splitlines():
        key, separator, value = line.partition("=")
        if not separator:
            continue
        section, _, option = key.rpartition(".")
        target = from_environment if section == ":env:" else from_files
        target[option] = str(ast.literal_eval(value))
    return {**from_files, **from_environment}


def pip_conf(settings: dict[str, str]) -> str:
    lines = ["[global]"]
    for option in PASSED:
        if option in settings:
            value = "\n    ".join(settings[option].split())
            lines.append(f"{option} = {value}")
    if "cert" in settings:
        lines.append(f"cert = {CERT_IN_BUILD}")
    return "\n".join(lines) + "\n"


def main() -> None:
    folder = Path(sys.argv[1])
    settings = configured()
    conf = folder / "pip.conf"
    conf.write_text(pip_conf(settings))
    conf.chmod(0o600)
    print(f"--secret=id=pip.conf,src={conf}")
    if "cert" in settings:
        print(f"--secret=id=pip-cert,src={Path(settings['cert']).resolve()}")


if __name__ == "__main__":
    main()
