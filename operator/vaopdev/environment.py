"""Install the operator into a control plane the way a user would, and run it with the chart's identity.

``helm install`` applies the chart (CRDs, ServiceAccount, least-privilege RBAC, Deployment); pods
never start here (no kubelet), so the operator runs as a local process whose kubeconfig carries a
token of the chart's ServiceAccount from the TokenRequest API. A missing RBAC rule therefore fails
here exactly as it would in a cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client, config
from prometheus_client.parser import text_string_to_metric_families

from . import binaries, cluster

CHART_DIR = binaries.REPO_ROOT / "charts" / "video-analyzer-operator"
RELEASE = "vaop"
OPERATOR_NAMESPACE = "vaop-system"
OPERATOR_SERVICE_ACCOUNT = "video-analyzer-operator"
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


@dataclass(frozen=True)
class OperatorIdentity:
    kubeconfig: Path
    namespace: str
    service_account: str
    data_api_port: int  # where the apiserver's aggregator finds the data API (see data_api_port)


def data_api_port(plane: cluster.ControlPlane) -> int:
    """The loopback port of the local operator's data API, fixed for the control plane's life: the
    chart's APIService reaches it through an ExternalName Service to localhost on this port, so every
    start of the operator listens on the same one."""
    assert plane.workdir is not None
    path = plane.workdir / "data-api-port"
    if not path.exists():
        path.write_text(str(cluster.free_port()))
    return int(path.read_text())


def admin_api(plane: cluster.ControlPlane) -> client.ApiClient:
    assert plane.admin_kubeconfig is not None
    return config.new_client_from_config(config_file=str(plane.admin_kubeconfig))


def helm_install(
    plane: cluster.ControlPlane, *, namespace: str = OPERATOR_NAMESPACE, values: dict[str, str] | None = None
) -> None:
    assert plane.bins is not None and plane.admin_kubeconfig is not None
    command = [
        str(plane.bins.helm),
        "upgrade",
        "--install",
        RELEASE,
        str(CHART_DIR),
        "--namespace",
        namespace,
        "--create-namespace",
        "--kubeconfig",
        str(plane.admin_kubeconfig),
    ]
    local = {"dataAPI.service.externalName": "localhost", "dataAPI.service.port": str(data_api_port(plane))}
    for key, value in {**local, **(values or {})}.items():
        command += ["--set", f"{key}={value}"]
    # Helm keeps caches under HOME; a private one keeps runs independent of the user's helm setup.
    assert plane.workdir is not None
    helm_home = plane.workdir / "helm"
    env = dict(
        os.environ,
        HELM_CACHE_HOME=str(helm_home / "cache"),
        HELM_CONFIG_HOME=str(helm_home / "config"),
        HELM_DATA_HOME=str(helm_home / "data"),
    )
    subprocess.run(command, check=True, env=env, capture_output=True)


def operator_identity(
    plane: cluster.ControlPlane,
    *,
    namespace: str = OPERATOR_NAMESPACE,
    service_account: str = OPERATOR_SERVICE_ACCOUNT,
    hours: int = 24 * 7,
) -> OperatorIdentity:
    """A kubeconfig that authenticates as the chart's ServiceAccount (never as an admin)."""
    assert plane.ca is not None and plane.workdir is not None
    with admin_api(plane) as api:
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=hours * 3600)
        )
        response = client.CoreV1Api(api).create_namespaced_service_account_token(
            service_account, namespace, request
        )
    path = cluster.write_kubeconfig(
        plane.workdir / "operator.kubeconfig",
        cluster.kubeconfig_dict(
            server=plane.server,
            ca_pem=plane.ca.cert_pem,
            user=f"system:serviceaccount:{namespace}:{service_account}",
            token=response.status.token,
        ),
    )
    return OperatorIdentity(path, namespace, service_account, data_api_port(plane))


def wait_for_data_api(plane: cluster.ControlPlane, *, timeout: float = 90) -> None:
    """Until the apiserver serves data.videoanalyzer.io (its APIService Available)."""
    deadline = time.monotonic() + timeout
    with admin_api(plane) as api:
        custom = client.CustomObjectsApi(api)
        while True:
            try:
                custom.list_cluster_custom_object("data.videoanalyzer.io", "v1alpha1", "videos", limit=1)
                return
            except client.ApiException as error:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the data API (APIService v1alpha1.data.videoanalyzer.io) is not served: "
                        f"{error.status}"
                    ) from None
            time.sleep(0.5)


def operator_command() -> list[str]:
    return [sys.executable, "-m", "vaop", "run"]


class OperatorProcess:
    """The operator as a local process with the chart's identity. Tests may kill and restart it.

    ``log_path`` None lets it write to this process's stdout (``make up``). Every start picks fresh
    health and metrics ports and waits until /readyz says the operator is ready (watches synced,
    webhook registered, RBAC complete). It elects itself leader on the chart's Lease under this
    host's name, so a restarted process leads again at once.
    """

    def __init__(
        self,
        identity: OperatorIdentity,
        log_path: Path | None,
        *,
        settings: dict[str, str] | None = None,
        log_level: str = "INFO",
        data_api_on: cluster.ControlPlane | None = None,
        faults: bool = False,
    ) -> None:
        self.identity = identity
        # Set: every start also waits until ``data_api_on`` serves the data API again. The aggregator
        # answers 503 after a check that found nothing listening, until a later check passes.
        self.data_api_on = data_api_on
        self.log_path = log_path
        self.settings = dict(settings or {})
        self.log_level = log_level
        self.popen: subprocess.Popen[bytes] | None = None
        self.ready_url = ""
        self.metrics_url = ""
        # The providers' test seam (vaop/providers/faults.py): vaults listed there fail transiently.
        # Only an operator started with ``faults`` runs inside it: production never does, nor should
        # the tests that inject nothing. Without a log file the seam's list lives in a scratch folder
        # of our own, removed by stop().
        self.faults = faults
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        if log_path is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="vaop-op-")
            log_path = Path(self._scratch.name) / "unused.log"
        self.fault_file = log_path.with_name("faults")
        self.fault_file.write_text("")

    def start(self, *, timeout: float = 60, data_api: bool = True, ready: bool = True) -> None:
        """Start, and wait until ready (``ready`` False: until the health port answers at all)."""
        if self.alive():  # two operators of one identity would both lead: never what a caller wants
            raise RuntimeError("the operator is running already: stop or kill it first")
        health_port, metrics_port, webhook_port = (
            cluster.free_port(),
            cluster.free_port(),
            cluster.free_port(),
        )
        self.ready_url = f"http://127.0.0.1:{health_port}/readyz"
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        env = dict(
            os.environ,
            KUBECONFIG=str(self.identity.kubeconfig),
            VAOP_NAMESPACE=self.identity.namespace,
            VAOP_HEALTH_PORT=str(health_port),
            VAOP_HEALTH_HOST="127.0.0.1",
            VAOP_METRICS_PORT=str(metrics_port),
            # Local mode: the apiserver on this host calls the webhook by URL, not through a Service.
            VAOP_WEBHOOK_PORT=str(webhook_port),
            VAOP_WEBHOOK_HOST="127.0.0.1",
            VAOP_WEBHOOK_URL=f"https://127.0.0.1:{webhook_port}",
            VAOP_DATA_API_PORT=str(self.identity.data_api_port),
            VAOP_DATA_API_HOST="127.0.0.1",
            # The local platform vets SoftHSM2's module (the Debian package's path) for pkcs11 vaults.
            VAOP_PKCS11_MODULES=json.dumps([SOFTHSM_MODULE]),
        )
        if self.faults:
            env["VAOP_FAULT_FILE"] = str(self.fault_file)
        else:
            env.pop("VAOP_FAULT_FILE", None)
        env.update(self.settings)  # the caller's settings win, also over the ports above
        command = [*operator_command(), "--log-level", self.log_level]
        if self.log_path is None:
            self.popen = subprocess.Popen(command, env=env, preexec_fn=cluster.die_with_parent)
        else:
            with open(self.log_path, "ab") as log:
                self.popen = subprocess.Popen(
                    command, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=cluster.die_with_parent
                )
        deadline = time.monotonic() + timeout
        while not (self._ready() if ready else self.readiness()[0]):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the operator did not become ready within {timeout}s:\n{self.log()[-3000:]}"
                )
            time.sleep(0.2)
        if ready and data_api and self.data_api_on is not None:
            wait_for_data_api(self.data_api_on)

    def _ready(self) -> bool:
        assert self.popen is not None
        if self.popen.poll() is not None:
            raise RuntimeError(f"the operator exited with {self.popen.returncode}:\n{self.log()[-3000:]}")
        try:
            with urllib.request.urlopen(self.ready_url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def readiness(self) -> tuple[int, str]:
        """/readyz's status and text now; (0, "") while nothing answers."""
        try:
            with urllib.request.urlopen(self.ready_url, timeout=1) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return 0, ""

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the operator's samples of ``name`` that carry ``labels`` (its /metrics now)."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            page = response.read().decode()
        return sum(
            sample.value
            for family in text_string_to_metric_families(page)
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup code runs, as when a node dies or the OOM killer strikes."""
        assert self.popen is not None
        self.popen.kill()
        self.popen.wait()

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if self._scratch is not None:
            self._scratch.cleanup()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    @contextlib.contextmanager
    def instead(
        self,
        log: Path,
        *,
        settings: dict[str, str] | None = None,
        identity: OperatorIdentity | None = None,
        faults: bool = False,
    ) -> Iterator[OperatorProcess]:
        """This operator stopped (its Lease released) and another in its place, with the same identity
        (or ``identity``) and settings plus ``settings``; this one started again afterwards."""
        self.stop()
        replacement = OperatorProcess(
            identity or self.identity,
            log,
            settings={**self.settings, **(settings or {})},
            log_level=self.log_level,
            faults=faults,
        )
        try:
            replacement.start(timeout=120)
            yield replacement
        finally:
            replacement.stop()
            self.start()

    def fail_vault(self, namespace: str, vault: str, *, failing: bool) -> None:
        if not self.faults:
            raise RuntimeError("this operator runs outside the fault seam: start it with faults=True")
        entries = set(self.fault_file.read_text().split())
        entry = f"{namespace}/{vault}"
        entries = entries | {entry} if failing else entries - {entry}
        self.fault_file.write_text("\n".join(sorted(entries)))
