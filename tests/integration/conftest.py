"""One real control plane per test session, the chart installed with helm, the operator as a process.

The operator authenticates with a token of the chart's ServiceAccount, so it has exactly the RBAC
the chart grants; tests act as an admin (system:masters) like a platform engineer with kubectl.
"""

from __future__ import annotations

import os
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client

from tests.helpers import eventually
from vaop.devcluster import cluster, environment


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[cluster.ControlPlane]:
    with cluster.ControlPlane() as plane:
        environment.helm_install(plane)
        yield plane


@pytest.fixture(scope="session")
def admin(control_plane: cluster.ControlPlane) -> Iterator[client.ApiClient]:
    with environment.admin_api(control_plane) as api:
        yield api


@dataclass
class Kubectl:
    binary: Path
    kubeconfig: Path

    def __call__(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binary), "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result


@pytest.fixture(scope="session")
def kubectl(control_plane: cluster.ControlPlane) -> Kubectl:
    assert control_plane.bins is not None and control_plane.admin_kubeconfig is not None
    return Kubectl(control_plane.bins.kubectl, control_plane.admin_kubeconfig)


# Short intervals so lifecycle tests run in seconds; the defaults are 30 s and 5 min.
CHECK_INTERVAL = 3.0
GRACE_PERIOD = 15.0


class OperatorProcess:
    """The operator as a local process with the chart's identity; tests may kill and restart it."""

    def __init__(self, identity: environment.OperatorIdentity, log_path: Path) -> None:
        self.identity = identity
        self.log_path = log_path
        # The providers' test seam (vaop/providers/faults.py): vaults listed here fail transiently.
        self.fault_file = log_path.with_name("faults")
        self.fault_file.write_text("")
        self.popen: subprocess.Popen[bytes] | None = None
        self.health_url = ""

    def start(self) -> None:
        health_port = cluster.free_port()
        self.health_url = f"http://127.0.0.1:{health_port}/healthz"
        env = environment.operator_env(
            self.identity,
            VAOP_HEALTH_PORT=str(health_port),
            VAOP_METRICS_PORT=str(cluster.free_port()),
            VAOP_CHECK_INTERVAL=str(CHECK_INTERVAL),
            VAOP_GRACE_PERIOD=str(GRACE_PERIOD),
            VAOP_FAULT_FILE=str(self.fault_file),
        )
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                [*environment.operator_command(), "--log-level", "DEBUG"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=cluster.die_with_parent,
            )
        eventually(self._healthy, timeout=60)

    def _healthy(self) -> bool:
        assert self.popen is not None
        assert self.popen.poll() is None, f"operator exited:\n{self.log()[-3000:]}"
        try:
            with urllib.request.urlopen(self.health_url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup code runs, as when a node dies or the OOM killer strikes."""
        assert self.popen is not None
        self.popen.kill()
        self.popen.wait()

    def stop(self) -> None:
        if not self.alive():
            return
        assert self.popen is not None
        self.popen.terminate()
        try:
            self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def fail_vault(self, namespace: str, vault: str, *, failing: bool) -> None:
        entries = set(self.fault_file.read_text().split())
        entries = entries | {f"{namespace}/{vault}"} if failing else entries - {f"{namespace}/{vault}"}
        self.fault_file.write_text("\n".join(sorted(entries)))


@pytest.fixture(scope="session")
def operator(
    control_plane: cluster.ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    identity = environment.operator_identity(control_plane)
    process = OperatorProcess(identity, tmp_path_factory.mktemp("operator") / "operator.log")
    process.start()
    yield process
    process.stop()
    if os.environ.get("VAOP_SHOW_OPERATOR_LOG"):
        print(process.log())


@pytest.fixture
def namespace(admin: client.ApiClient) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(admin).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    client.CoreV1Api(admin).delete_namespace(name)
