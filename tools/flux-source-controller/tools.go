//go:build tools

// Package tools pins Flux's source-controller, which the kind tier's GitOps test runs.
package tools

import (
	_ "github.com/fluxcd/source-controller"
)
