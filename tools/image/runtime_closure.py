"""Prints, one a line, every installed distribution that the project does not need at run time.

    python runtime_closure.py pyproject.toml

The image installs all of requirements.lock, which pins the development tools too (pytest, mypy, ruff, ...),
then uninstalls what this prints, so it keeps exactly the locked runtime closure: the project's dependencies
in pyproject.toml and what they require in turn, followed through the installed metadata with their markers
and extras. The project itself, pip and setuptools stay. It needs only pyproject.toml, not the sources, so the
image's layer of Python packages is built again only when the lock or the dependencies change. Run by the
Dockerfile with the image's Python; tests/devenv/test_deploy_config.py runs it here.
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_closure(requirements: Iterable[str]) -> set[str]:
    """The normalized names of the distributions `requirements` name and of every one they require."""
    needed: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = [(requirement, frozenset({""})) for requirement in requirements]
    while pending:
        line, extras = pending.pop()
        requirement = Requirement(line)
        if requirement.marker is not None and not any(
            requirement.marker.evaluate({"extra": extra}) for extra in extras
        ):
            continue
        name = normalized(requirement.name)
        wanted = frozenset(requirement.extras)
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        needed.add(name)
        pending.extend((child, wanted | {""}) for child in metadata.requires(name) or [])
    return needed


def main() -> None:
    project = tomllib.loads(Path(sys.argv[1]).read_text())["project"]
    installed = {normalized(dist.metadata["Name"]) for dist in metadata.distributions()}
    keep = runtime_closure(project["dependencies"]) | {normalized(project["name"]), "pip", "setuptools"}
    print("\n".join(sorted(installed - keep)))


if __name__ == "__main__":
    main()
