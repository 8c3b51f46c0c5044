"""Hands this machine's pip index settings to the other installers the project runs, without writing them
into a log, the image or the repository: pip's effective settings, as `pip config list` reports them from its
configuration files and PIP_* variables (the index, extra indexes, find-links, trusted hosts, proxy, timeout,
retries and the CA bundle).

    python tools/pip_settings.py image DIR    # the image build (tools/image/build.sh)
    python tools/pip_settings.py uv ARGS...   # `make venv`: runs the venv's uv with ARGS

image: the Dockerfile's install step reads pip's configuration from the build secret `pip.conf` and trusts the
CA bundle in the secret `pip-cert`. This writes that pip.conf into a folder the caller owns (and removes),
with the CA bundle pointed at the secret's path in the build. Settings that name files or folders of this
machine (find-links, client certificates) do not apply inside the build and are left out. Prints the
`podman build` arguments that pass the secrets, one a line.

uv: runs the uv next to this Python with the same settings in uv's own variables (variables, not arguments:
an index URL may hold credentials, and a command line is shown by `ps` and by make); where the environment
sets one of uv's variables already, it wins. pip's retries have no uv variable: uv keeps its own default.
"""

from __future__ import annotations

import ast
import os
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


# pip's option -> uv's variable, and how uv separates several values in it.
UV_VARIABLES = {
    "index-url": ("UV_INDEX_URL", " "),
    "extra-index-url": ("UV_EXTRA_INDEX_URL", " "),
    "find-links": ("UV_FIND_LINKS", ","),
    "trusted-host": ("UV_INSECURE_HOST", " "),
    "timeout": ("UV_HTTP_TIMEOUT", " "),
    "default-timeout": ("UV_HTTP_TIMEOUT", " "),
    "cert": ("SSL_CERT_FILE", " "),
}


def uv_environment(settings: dict[str, str]) -> dict[str, str]:
    """uv's variables for pip's settings; a proxy goes to the variables every HTTP client reads."""
    environment = {}
    for option, (variable, separator) in UV_VARIABLES.items():
        if option in settings:
            environment[variable] = separator.join(settings[option].split())
    if "proxy" in settings:
        environment["HTTPS_PROXY"] = environment["HTTP_PROXY"] = settings["proxy"]
    return environment


def image(folder: Path) -> None:
    settings = configured()
    conf = folder / "pip.conf"
    conf.write_text(pip_conf(settings))
    conf.chmod(0o600)
    print(f"--secret=id=pip.conf,src={conf}")
    if "cert" in settings:
        print(f"--secret=id=pip-cert,src={Path(settings['cert']).resolve()}")


def uv(arguments: list[str]) -> None:
    program = Path(sys.executable).parent / "uv"
    # uv's own variables, where the environment sets them, win over pip's settings.
    os.execve(program, [str(program), *arguments], {**uv_environment(configured()), **os.environ})


def main() -> None:
    command, *rest = sys.argv[1:] or [""]
    if command == "image" and len(rest) == 1:
        image(Path(rest[0]))
    elif command == "uv":
        uv(rest)
    else:
        sys.exit("usage: pip_settings.py image DIR | pip_settings.py uv ARGS...")


if __name__ == "__main__":
    main()
