#!/usr/bin/env bash
# Prints the cache key of one tool: a short hash of its wrapper module folder and the Go version.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
name=$1
{ go env GOVERSION; cd "$here/$name" && find . -type f -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-16
