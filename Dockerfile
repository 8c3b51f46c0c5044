# syntax=docker/dockerfile:1.7
# The reconciler image: `canaryapp run` with the pinned Pulumi CLI and Kubernetes provider plugin on PATH and
# the locked Python packages in a virtual environment (/opt/canaryapp). One file, two ways to build it:
# - with Docker anywhere: `docker build -t canaryapp:<tag> .` builds the two binaries from their Go modules by
#   the same recipes as `make tools` (tools/) and installs on python:3.11-slim-bookworm;
# - `make image` (tools/image/build.sh, podman) passes BASE_IMAGE, a root filesystem made from Debian's own
#   packages (tools/debian-base/), and TOOLS_IMAGE, the binaries `make tools` built: the Go stage is skipped.
# Either way the image runs exactly the versions the tests ran. No heredocs: podman 4.3's buildah has none.
ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG TOOLS_IMAGE=tools-from-source

FROM golang:1.26-bookworm AS tools-from-source
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

# Either the stage above or an image holding the same two files in /out.
FROM ${TOOLS_IMAGE} AS tools

FROM ${BASE_IMAGE}
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/canaryapp/bin:$PATH
WORKDIR /src
# The locked packages first, in a layer of their own that a change of the sources does not rebuild.
# requirements.lock pins the development tools too (pytest, mypy, ruff, ...): runtime_closure.py prints every
# installed distribution the project's dependencies do not need at run time, and they go in the same step, so
# the image keeps exactly the locked runtime closure. The build machine may hand pip its index settings as the
# secret pip.conf (and the CA bundle they name as pip-cert); secrets are mounted for this step only.
COPY requirements.lock pyproject.toml tools/image/runtime_closure.py ./
RUN --mount=type=secret,id=pip.conf \
    --mount=type=secret,id=pip-cert \
    export PIP_CONFIG_FILE=/run/secrets/pip.conf \
    && python3 -m venv /opt/canaryapp \
    && pip install --upgrade pip==25.3 \
    && pip install --no-deps -r requirements.lock \
    && python runtime_closure.py pyproject.toml > /tmp/dev-only.txt \
    && pip uninstall -y -r /tmp/dev-only.txt \
    && rm /tmp/dev-only.txt
COPY --from=tools /out/pulumi /out/pulumi-resource-kubernetes /usr/local/bin/
COPY README.md ./
COPY reconciler/ reconciler/
COPY stacks/ stacks/
RUN pip install --no-deps --no-build-isolation . \
    && pip check \
    && rm -rf /src \
    && mkdir -p /var/lib/canaryapp \
    && chown 65532:65532 /var/lib/canaryapp
ENV HOME=/var/lib/canaryapp \
    CANARYAPP_STATE_DIR=/var/lib/canaryapp
WORKDIR /var/lib/canaryapp
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["canaryapp"]
CMD ["run"]
