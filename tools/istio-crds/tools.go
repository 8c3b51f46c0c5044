//go:build tools

// Package tools pins istio.io/api, whose kubernetes/customresourcedefinitions.gen.yaml holds Istio's real CRDs.
package tools

import _ "istio.io/api/networking/v1"
