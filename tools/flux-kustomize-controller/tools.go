//go:build tools

// Package tools pins Flux's kustomize-controller, which the Flux end-to-end test runs against the local
// cluster to apply CanaryApps from a Git repository and health-check them with kstatus.
package tools

import _ "github.com/fluxcd/kustomize-controller"
