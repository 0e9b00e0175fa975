//go:build tools

// Package tools pins the kind command this module builds.
package tools

import (
	_ "sigs.k8s.io/kind"
)
