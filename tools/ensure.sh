#!/usr/bin/env bash
# `make tools`: makes sure every pinned binary the project runs is built and cached, then links them into
# .tools/bin and .tools/share in the work tree (links only: the builds live in the cache, keyed by version).
# A warm cache costs a few hashes and no builds. What comes from Debian (Prometheus, podman and the image's
# build tools) is listed in tools/debian-packages.txt and installed first when missing (tools/debian.sh).
# Each build prints a line when it starts and when it ends (name, seconds); a failure prints the last lines of
# its log.
set -euo pipefail
shopt -s nullglob
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
# shellcheck source=tools/list.sh
source "$here/list.sh"
start=$(date +%s)
"$here/debian.sh"
mkdir -p "$top/.tools/bin" "$top/.tools/share"
# Missing tools build two at a time: one Go build rarely keeps both cores busy (linking is single-threaded).
if ! printf '%s\n' "${TOOLS[@]}" | xargs -P 2 -I{} "$here/build.sh" {} >/dev/null; then
  echo "make tools failed: see the FAILED line above" >&2
  exit 1
fi
for name in "${TOOLS[@]}"; do
  bin=$("$here/build.sh" "$name")
  for f in "$bin"/*; do ln -sfn "$f" "$top/.tools/bin/$(basename "$f")"; done
  if [[ -d "$bin/../share" ]]; then
    for f in "$bin"/../share/*; do ln -sfn "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$top/.tools/share/"; done
  fi
done
ln -sfn "$(command -v prometheus)" "$top/.tools/bin/prometheus"
# Pulumi's Python language host cannot be built here (its Go module is not served), so `pulumi preview` of the
# top-level Pulumi.yaml uses the project's stand-in, which runs on the project's virtual environment.
host="$top/.tools/bin/pulumi-language-python"
printf '#!/usr/bin/env bash\nexec "%s/.venv/bin/python" -m devenv.language_host "$@"\n' "$top" > "$host"
chmod +x "$host"
elapsed=$(( $(date +%s) - start ))
if (( elapsed > 5 )); then echo "tools ready in ${elapsed}s" >&2; fi
