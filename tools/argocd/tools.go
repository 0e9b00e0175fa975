//go:build tools

// Package tools pins Argo CD, whose application-controller and repo-server the kind tier's GitOps
// test runs (one binary, `argocd`, that acts as the component its name says).
package tools

import (
	_ "github.com/argoproj/argo-cd/v3/cmd"
)
