//go:build tools

// Package tools pins Velero's object-store plugin for S3 (here: versitygw on the host).
package tools

import (
	_ "github.com/vmware-tanzu/velero-plugin-for-aws/velero-plugin-for-aws"
	_ "github.com/vmware-tanzu/velero-plugin-for-aws/hack/cp-plugin"
)
