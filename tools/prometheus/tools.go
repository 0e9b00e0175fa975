//go:build tools

// Package tools pins the Prometheus commands this module builds: promtool, which tests the chart's
// alert rules (tests/unit/test_alert_rules.py), and the server, which scrapes the operator on the
// kind tier (tests/kind/test_prometheus.py).
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
