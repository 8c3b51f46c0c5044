#!/usr/bin/env bash
# Installs the Debian packages of tools/debian-packages.txt whose command is missing, in one quiet apt-get call
# with a line on stderr naming them; prints nothing when all are there. Root runs apt-get itself, anyone else
# through sudo. `make tools` calls it first, so every target that builds or runs anything has them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
missing=()
while read -r command package _; do
  [[ -z $command || $command == \#* ]] && continue
  command -v "$command" >/dev/null 2>&1 || missing+=("$package")
done < "$here/debian-packages.txt"
(( ${#missing[@]} )) || exit 0
echo "installing Debian packages: ${missing[*]} (tools/debian-packages.txt)" >&2
if [[ $(id -u) -eq 0 ]]; then as_root=(); else as_root=(sudo); fi
log=$(mktemp "${TMPDIR:-/tmp}/canaryapp-apt.XXXXXX")
trap 'rm -f "$log"' EXIT
if ! { "${as_root[@]}" apt-get update -qq &&
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
} >"$log" 2>&1; then
  echo "FAILED installing ${missing[*]}; last lines of apt-get:" >&2
  tail -n 20 "$log" | sed 's/^/    /' >&2
  exit 1
fi
