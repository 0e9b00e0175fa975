"""The cluster tier: one real kind cluster per session (podman provider, made offline), the operator
image loaded into it and the chart installed with helm, as a user does it.

Set VAOP_KEEP_KIND=1 to leave the cluster running after the session (then `make kind-down`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from kubernetes import client, config

from vaopdev import gitserver, hostsetup, kindcluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/kind/" in str(item.path):
            item.add_marker(pytest.mark.kind)


@pytest.fixture(scope="session")
def kind_cluster() -> Iterator[kindcluster.Cluster]:
    reason = hostsetup.kind_unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):  # in CI a missing tier is a failure, never a quiet skip
            pytest.fail(f"the kind tier cannot run on this CI host: {reason}")
        pytest.skip(f"the kind tier cannot run on this host: {reason}")
    cluster = kindcluster.up(install=False)
    yield cluster
    if not os.environ.get("VAOP_KEEP_KIND"):
        kindcluster.down()


@pytest.fixture(scope="session")
def admin(kind_cluster: kindcluster.Cluster) -> Iterator[client.ApiClient]:
    with config.new_client_from_config(config_file=str(kind_cluster.kubeconfig)) as api:
        yield api


@pytest.fixture(scope="session")
def git() -> Iterator[gitserver.GitServer]:
    """The Git server the GitOps tools read from, on the kind network's bridge."""
    server = gitserver.GitServer().start()
    yield server
    server.stop()
