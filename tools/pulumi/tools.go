//go:build tools

// Package tools pins the Pulumi CLI (engine) that the Automation API drives.
package tools

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
