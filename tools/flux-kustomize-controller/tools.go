//go:build tools

// Package tools pins Flux's kustomize-controller, which the kind tier's GitOps test runs.
package tools

import (
	_ "github.com/fluxcd/kustomize-controller"
)
