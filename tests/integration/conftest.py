"""One real control plane per test session, the chart installed with helm, the operator as a process.

The operator authenticates with a token of the chart's ServiceAccount, so it has exactly the RBAC
the chart grants; tests act as an admin (system:masters) like a platform engineer with kubectl.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes_asyncio import client as aclient

from tests.integration import azure_stand_in, softhsm
from vaop import kubeclient
from vaopdev import cluster, environment, openbao


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)
    # Tests that rotate and retire the session's platform keys run after every other test, which
    # may rely on the versions the operator first made.
    items.sort(key=lambda item: item.get_closest_marker("changes_platform_keys") is not None)


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


@pytest.fixture
async def api(control_plane: cluster.ControlPlane) -> AsyncIterator[aclient.ApiClient]:
    """An asyncio client with admin rights, for tests that drive the operator's own modules."""
    configuration = await kubeclient.load_configuration(str(control_plane.admin_kubeconfig))
    async with aclient.ApiClient(configuration) as api:
        yield api


@pytest.fixture(scope="session")
def kubectl(control_plane: cluster.ControlPlane) -> Kubectl:
    assert control_plane.bins is not None and control_plane.admin_kubeconfig is not None
    return Kubectl(control_plane.bins.kubectl, control_plane.admin_kubeconfig)


OperatorProcess = environment.OperatorProcess

# Short intervals so lifecycle tests run in seconds; the defaults are 30 s and 5 min.
CHECK_INTERVAL = 3.0
GRACE_PERIOD = 15.0
WITHIN_ONE_INTERVAL = CHECK_INTERVAL + 10  # the issues' bound for detection: one interval plus 10 s


@pytest.fixture(scope="session")
def softhsm_conf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SoftHSM2 configuration the tests and the operator share (one token, made up front)."""
    conf = softhsm.configure(tmp_path_factory.mktemp("softhsm"))
    os.environ["SOFTHSM2_CONF"] = str(conf)  # for the test process's own PKCS#11 calls
    return conf


@pytest.fixture(scope="session")
def bao_server(
    control_plane: cluster.ControlPlane, admin: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[openbao.OpenBao]:
    """A real OpenBao server for the session, with transit and Kubernetes auth configured."""
    server = openbao.start(control_plane, admin, tmp_path_factory.mktemp("openbao"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azure_vault(
    admin: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[azure_stand_in.AzureKeyVault]:
    """The Azure Key Vault stand-in (no emulator can be installed here: see its module)."""
    vault = azure_stand_in.start(admin, tmp_path_factory.mktemp("azure"))
    yield vault
    vault.stop()


@pytest.fixture(scope="session")
def operator(
    control_plane: cluster.ControlPlane, tmp_path_factory: pytest.TempPathFactory, softhsm_conf: Path
) -> Iterator[environment.OperatorProcess]:
    identity = environment.operator_identity(control_plane)
    process = environment.OperatorProcess(
        identity,
        tmp_path_factory.mktemp("operator") / "operator.log",
        settings={
            "VAOP_CHECK_INTERVAL": str(CHECK_INTERVAL),
            "VAOP_GRACE_PERIOD": str(GRACE_PERIOD),
            "SOFTHSM2_CONF": str(softhsm_conf),
        },
        log_level="DEBUG",
        data_api_on=control_plane,
    )
    process.start()
    yield process
    process.stop()
    if os.environ.get("VAOP_SHOW_OPERATOR_LOG"):
        print(process.log())


@pytest.fixture
def faulty_operator(
    operator: environment.OperatorProcess, tmp_path: Path
) -> Iterator[environment.OperatorProcess]:
    """The session's operator replaced, for this test only, by one inside the providers' fault seam
    (vaop/providers/faults.py), so the test can make a vault fail; the others run as production does."""
    with operator.instead(tmp_path / "operator.log", faults=True) as faulty:
        yield faulty


def _fresh_namespace(admin: client.ApiClient, prefix: str) -> Iterator[str]:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(admin).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    client.CoreV1Api(admin).delete_namespace(name)


@pytest.fixture
def namespace(admin: client.ApiClient) -> Iterator[str]:
    """A fresh namespace per test: the tenant's."""
    yield from _fresh_namespace(admin, "t")


@pytest.fixture
def keys_namespace(admin: client.ApiClient) -> Iterator[str]:
    """The tenant's separate namespace for key Secrets (the kubernetes provider's "vault")."""
    yield from _fresh_namespace(admin, "keys")


@pytest.fixture
def other_keys_namespace(admin: client.ApiClient) -> Iterator[str]:
    """A second namespace of key Secrets: another "vault" of the same tenant."""
    yield from _fresh_namespace(admin, "keys")
