//go:build tools

// Package tools pins versitygw, the S3-compatible object store Velero writes its backups to.
package tools

import (
	_ "github.com/versity/versitygw/cmd/versitygw"
)
