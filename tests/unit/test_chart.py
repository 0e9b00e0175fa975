"""The chart ships the same CRDs as crds/ (the chart copy is what `helm install` applies)."""

from __future__ import annotations

from vaop.devcluster import binaries


def test_chart_crds_match_the_top_level_crds() -> None:
    chart_crds = binaries.REPO_ROOT / "charts" / "video-analyzer-operator" / "crds"
    top_level = sorted((binaries.REPO_ROOT / "crds").glob("*.yaml"))
    assert [p.name for p in top_level] == sorted(p.name for p in chart_crds.glob("*.yaml"))
    for crd in top_level:
        assert (chart_crds / crd.name).read_text() == crd.read_text(), f"run `make crds`: {crd.name} differs"
