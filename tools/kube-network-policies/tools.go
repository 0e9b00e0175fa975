//go:build tools

// Package tools pins kube-network-policies, the NetworkPolicy enforcer (nfqueue and nftables on the
// node) that the kind tier runs in place of a CNI's own, to show the chart's NetworkPolicy enforced.
package tools

import (
	_ "sigs.k8s.io/kube-network-policies/cmd"
)
