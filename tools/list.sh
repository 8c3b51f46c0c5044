# The pinned tools, in build order (the slow ones last so that the quick ones are ready early).
# shellcheck disable=SC2034
TOOLS=(istio-crds gateway-api-crds argocd-crds kubernetes-openapi etcd kwok kstatus versitygw flux-kustomize-controller kubernetes pulumi-kubernetes pulumi)
