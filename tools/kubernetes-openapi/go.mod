module canaryapp.local/tools/kubernetes-openapi

go 1.26.0

require k8s.io/kubernetes v1.36.3
