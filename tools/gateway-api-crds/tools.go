//go:build tools

// Package tools pins sigs.k8s.io/gateway-api, whose config/crd/standard/ holds the Gateway API's standard-channel
// CRDs (GatewayClass, Gateway, HTTPRoute, ...).
package tools

import _ "sigs.k8s.io/gateway-api/apis/v1"
