# Kubernetes control plane (kube-apiserver, kube-controller-manager, kube-scheduler) and kubectl, one release.
K8S_VERSION=v1.36.3
build_tool() {
  local src=$1 bin=$2 pkg=k8s.io/component-base/version cgo=k8s.io/client-go/pkg/version flags=""
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  for p in $pkg $cgo; do
    flags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    flags+=" -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $flags" -o "$bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
}
