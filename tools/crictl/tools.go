//go:build tools

// Package tools pins crictl, which kind runs inside the node.
package tools

import (
	_ "sigs.k8s.io/cri-tools/cmd/crictl"
)
