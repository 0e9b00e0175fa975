"""What the chart ships for Prometheus and Grafana: the alert rules (files/alerts.yaml), valid for
Prometheus, each rule tested with `promtool test rules` (tests/fixtures/alerts-test.yaml), and the
PrometheusRule the chart renders holding exactly them; the dashboard (files/dashboard.json), every
query evaluated by Prometheus' own engine (tests/fixtures/dashboard-test.yaml). promtool is built
from Prometheus' Go module (tools/prometheus)."""

from __future__ import annotations

import json
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
DASHBOARD = CHART / "files" / "dashboard.json"
DASHBOARD_TESTS = binaries.REPO_ROOT / "tests" / "fixtures" / "dashboard-test.yaml"


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


def _dashboard_queries() -> list[str]:
    """Every query of the dashboard as Grafana sends it with every namespace selected."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"].replace("$namespace", ".*") for panel in panels for target in panel["targets"]]


def test_every_dashboard_query_gives_what_it_should_in_prometheus(promtool: Path) -> None:
    tested = [
        t["expr"]
        for test in yaml.safe_load(DASHBOARD_TESTS.read_text())["tests"]
        for t in test["promql_expr_test"]
    ]
    assert sorted(tested) == sorted(_dashboard_queries()), "each query of the dashboard is tested"
    result = _run(promtool, "test", "rules", str(DASHBOARD_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_reads_only_series_the_operator_exports() -> None:
    families = list(REGISTRY.collect())
    exported = {family.name for family in families}
    exported |= {
        f"{f.name}_{part}" for f in families if f.type == "histogram" for part in ("count", "bucket")
    }
    exported |= {f"{f.name}_total" for f in families if f.type == "counter"}
    named = {name for query in _dashboard_queries() for name in re.findall(r"vaop_[a-z_]+", query)}
    assert named and named <= exported, named - exported


def test_the_chart_ships_the_dashboard_for_grafanas_sidecar_when_asked() -> None:
    assert not [
        d for d in render() if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")
    ]
    config_map = only(render("metrics.grafanaDashboard.enabled=true"), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["video-analyzer-operator.json"]) == json.loads(DASHBOARD.read_text())


def _documented_scrape_config() -> dict[str, object]:
    """The prometheus.yml excerpt docs/operations.md gives for a plain Prometheus."""
    text = (binaries.REPO_ROOT / "docs" / "operations.md").read_text()
    section = text.split("### With a plain Prometheus", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    return dict(yaml.safe_load(block))


def test_the_documented_scrape_configuration_is_the_one_the_kind_tier_runs(
    promtool: Path, tmp_path: Path
) -> None:
    from vaopdev import prometheus  # the kind tier's Prometheus (tests/kind/test_helm_release.py)

    tested = prometheus.configuration("vaop-system", interval="5s")
    documented = _documented_scrape_config()
    assert documented["scrape_configs"] == tested["scrape_configs"]
    assert [Path(str(f)).name for f in documented["rule_files"]] == [RULES.name]  # type: ignore[attr-defined]
    (tmp_path / "alerts.yaml").write_text(RULES.read_text())
    tested["rule_files"] = [str(tmp_path / "alerts.yaml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(tested))
    checked = _run(promtool, "check", "config", str(tmp_path / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 4 rules found" in checked.stdout
