"""A Kopf operator that watches the operator's three kinds and does nothing: the baseline beside which
bench/soak.py reads the operator's memory, descriptors and threads.

    kopf run --all-namespaces --standalone bench/watch_only_operator.py
"""

from __future__ import annotations

from typing import Any

import kopf


@kopf.on.event("videoanalyzer.io", "v1alpha1", "videoanalyzeraccounts")
@kopf.on.event("videoanalyzer.io", "v1alpha1", "customerkeys")
@kopf.on.event("videoanalyzer.io", "v1alpha1", "keyvaults")
def seen(**_: Any) -> None:
    pass
