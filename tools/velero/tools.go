//go:build tools

// Package tools pins the velero command this module builds: the backup server the kind tier's
// restore tests run, and the client that writes its install manifests.
package tools

import (
	_ "github.com/vmware-tanzu/velero/cmd/velero"
)
