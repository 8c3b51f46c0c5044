# syntax=docker/dockerfile:1.7
# The reconciler image: `canaryapp run` with the pinned Pulumi CLI and Kubernetes provider plugin on PATH.
# The binaries are built from their Go modules by the same recipes as `make tools` (tools/), so the image runs
# exactly the versions the tests ran. Build: docker build -t canaryapp:<tag> .

FROM golang:1.26-bookworm AS tools
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
WORKDIR /src
COPY tools/ tools/
ENV CANARYAPP_TOOLS_CACHE=/cache/canaryapp-tools
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    --mount=type=cache,target=/cache/canaryapp-tools \
    mkdir -p /out \
    && cp "$(tools/build.sh pulumi)/pulumi" /out/ \
    && cp "$(tools/build.sh pulumi-kubernetes)/pulumi-resource-kubernetes" /out/

FROM python:3.11-slim-bookworm
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements.lock pyproject.toml README.md ./
COPY reconciler/ reconciler/
COPY stacks/ stacks/
# requirements.lock pins the development tools too (pytest, mypy, ruff, ...). This prints every installed
# distribution that the canaryapp package does not need at run time, following its requirements (with
# markers and extras) through the installed metadata, so the image keeps exactly the locked runtime closure.
COPY <<'PY' /src/dev_only.py
import re
from importlib import metadata

from packaging.requirements import Requirement


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


needed: set[str] = set()
pending: list[tuple[str, frozenset[str]]] = [("canaryapp", frozenset())]
while pending:
    name, extras = pending.pop()
    key = f"{name}[{','.join(sorted(extras))}]"
    if key in needed:
        continue
    needed.update({key, name})
    for line in metadata.requires(name) or []:
        requirement = Requirement(line)
        markers_hold = requirement.marker is None or any(
            requirement.marker.evaluate({"extra": extra}) for extra in extras | {""}
        )
        if markers_hold:
            pending.append((normalized(requirement.name), frozenset(requirement.extras)))
installed = {normalized(dist.metadata["Name"]) for dist in metadata.distributions()}
print("\n".join(sorted(installed - needed - {"pip", "setuptools"})))
PY
RUN pip install --no-deps -r requirements.lock \
    && pip install --no-deps --no-build-isolation . \
    && python dev_only.py > /tmp/dev-only.txt \
    && pip uninstall -y -r /tmp/dev-only.txt \
    && pip check \
    && rm -rf /src /tmp/dev-only.txt \
    && mkdir -p /var/lib/canaryapp \
    && chown 65532:65532 /var/lib/canaryapp
COPY --from=tools /out/pulumi /out/pulumi-resource-kubernetes /usr/local/bin/
ENV HOME=/var/lib/canaryapp \
    CANARYAPP_STATE_DIR=/var/lib/canaryapp
WORKDIR /var/lib/canaryapp
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["canaryapp"]
CMD ["run"]
