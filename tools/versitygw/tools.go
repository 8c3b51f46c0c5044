//go:build tools

// Package tools pins versitygw, an S3-compatible gateway whose posix backend serves a local folder as buckets
// (the integration tests keep Pulumi state in it).
package tools

import _ "github.com/versity/versitygw/cmd/versitygw"
