//go:build tools

// Package tools pins kwok, which plays kubelet for fake nodes so Pods become Running and Ready.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
