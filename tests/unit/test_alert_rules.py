"""The alert rules the chart ships (files/alerts.yaml): valid for Prometheus, each rule tested with
`promtool test rules` (tests/fixtures/alerts-test.yaml), and the PrometheusRule the chart renders
holding exactly them. promtool is built from Prometheus' Go module (tools/prometheus)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

from tests.unit.test_chart import CHART, only, render
from vaop import metrics  # noqa: F401 (registers the operator's metrics)
from vaopdev import binaries

RULES = CHART / "files" / "alerts.yaml"
RULE_TESTS = binaries.REPO_ROOT / "tests" / "fixtures" / "alerts-test.yaml"


@pytest.fixture(scope="module")
def promtool() -> Path:
    return binaries.PROMETHEUS.ensure() / "promtool"


def _run(promtool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool), *args], capture_output=True, text=True, check=False, timeout=120)


def test_the_rules_file_is_valid_for_prometheus(promtool: Path) -> None:
    checked = _run(promtool, "check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 4 rules found" in checked.stdout


def test_every_alert_fires_when_it_should_and_only_then(promtool: Path) -> None:
    tested = _run(promtool, "test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    alerted = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    rules = [
        rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]
    assert alerted == set(rules), "every rule has a test in which it fires"


def test_a_broken_expectation_fails_promtool(promtool: Path, tmp_path: Path) -> None:
    """The test above can fail: the same tests with one expected summary changed do."""
    broken = RULE_TESTS.read_text().replace('summary: "2 accounts', 'summary: "3 accounts')
    (tmp_path / "broken.yaml").write_text(broken.replace("../../charts", str(CHART.parent)))
    tested = _run(promtool, "test", "rules", str(tmp_path / "broken.yaml"))
    assert tested.returncode != 0 and "VideoAnalyzerAccountsKeyInaccessible" in tested.stdout + tested.stderr


def test_the_rules_name_only_series_the_operator_exports() -> None:
    """A renamed metric would silence an alert for good: every series a rule reads is one of ours."""
    families = list(REGISTRY.collect())
    exported = {family.name for family in families}  # with no labelled sample yet, also the series:
    exported |= {
        f"{f.name}_{part}" for f in families if f.type == "histogram" for part in ("count", "bucket")
    }
    named = set(re.findall(r"vaop_[a-z_]+", RULES.read_text()))
    assert named and named <= exported, named - exported


def test_the_chart_renders_the_same_rules_as_a_prometheus_rule_when_asked() -> None:
    assert not [d for d in render() if d["kind"] == "PrometheusRule"]
    rule = only(
        render("metrics.prometheusRule.enabled=true", "metrics.prometheusRule.labels.release=kps"),
        "PrometheusRule",
    )
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    assert rule["metadata"]["labels"]["release"] == "kps"
