# Flux's kustomize-controller (v1.9.6: the newest release whose module declares a Go version this toolchain
# builds; v1.10 needs Go 1.27) and the CRDs it needs: its Kustomization CRD from its own module, and the
# source CRDs it watches (ExternalArtifact, GitRepository, OCIRepository, Bucket) from the source-controller
# module of the API version it imports (v1.9.0). source-controller itself is not built: the Flux test serves
# ExternalArtifacts from a local Git repository (devenv/flux.py). Its module declares a Go version this
# toolchain can build, but it is read straight from its zip, as tools/argocd-crds/ reads Argo CD's, so that
# requiring it cannot move the versions the controller is built with; the pinned hash is checked.
SOURCE_MODULE=github.com/fluxcd/source-controller
SOURCE_VERSION=v1.9.0
SOURCE_SUM=h1:5msg2yyjVYDULZos+2ve8MZzcSqTpusiXmrOeBhc9yY=
build_tool() {
  local src=$1 bin=$2 mod_dir share work info zip sum kind
  share=$(dirname "$bin")/share/flux-crds
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/kustomize-controller" \
    github.com/fluxcd/kustomize-controller)
  mod_dir=$(module_dir "$src" github.com/fluxcd/kustomize-controller)
  mkdir -p "$share"
  cp "$mod_dir/config/crd/bases/kustomize.toolkit.fluxcd.io_kustomizations.yaml" "$share/"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  info=$(cd "$work" && go mod download -json "$SOURCE_MODULE@$SOURCE_VERSION" || true)
  zip=$(sed -n 's/^\t"Zip": "\(.*\)",\{0,1\}$/\1/p' <<<"$info")
  sum=$(sed -n 's/^\t"Sum": "\(.*\)",\{0,1\}$/\1/p' <<<"$info")
  if [[ -z $zip || ! -f $zip || $sum != "$SOURCE_SUM" ]]; then
    echo "could not download $SOURCE_MODULE@$SOURCE_VERSION with hash $SOURCE_SUM:" >&2
    echo "$info" >&2
    return 1
  fi
  for kind in externalartifacts gitrepositories ocirepositories buckets; do
    python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' \
      "$zip" "$SOURCE_MODULE@$SOURCE_VERSION/config/crd/bases/source.toolkit.fluxcd.io_$kind.yaml" \
      > "$share/source.toolkit.fluxcd.io_$kind.yaml"
  done
}
