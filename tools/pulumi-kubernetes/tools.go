//go:build tools

// Package tools pins the Pulumi Kubernetes provider plugin. Its main package needs generated embed files that
// the module zip lacks, so recipe.sh copies the main package next to this module and generates them first.
package tools

import (
	_ "github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	_ "github.com/pulumi/pulumi/pkg/v3/codegen/schema"
)
