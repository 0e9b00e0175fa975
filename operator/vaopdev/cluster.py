"""A real Kubernetes control plane as local processes, the way controller-runtime's envtest runs one.

etcd, kube-apiserver (secure port, RBAC, service-account issuer) and kube-controller-manager
(garbage collector, namespace, service-account and cluster-role aggregation controllers) listen on
free loopback ports. Every process is started with a parent-death signal, so none outlives the
Python process that started it, even when that one is killed; ``stop()`` also removes the temporary folder.
"""

from __future__ import annotations

import base64
import ctypes
import datetime
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from vaop import pki

from . import binaries
from .certs import issue_client, service_account_signing_key

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# clusterrole-aggregation fills the built-in view/edit/admin roles, as in any cluster.
CONTROLLERS = "clusterrole-aggregation,garbagecollector,namespace,serviceaccount,serviceaccount-token"


_WORKDIR_PREFIX = "vaop-cp-"
_AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
"""


def remove_abandoned_workdirs() -> None:
    """Remove temporary folders whose owner was killed before it could clean up (SIGKILL, OOM)."""
    for workdir in Path(tempfile.gettempdir()).glob(f"{_WORKDIR_PREFIX}*"):
        try:
            owner = int((workdir / "owner.pid").read_text())
            os.kill(owner, 0)
        except (OSError, ValueError):
            shutil.rmtree(workdir, ignore_errors=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """Runs in the child before exec: ask the kernel to SIGKILL it when its parent dies.

    SIGKILL, not SIGTERM: with its parent gone nothing needs a graceful shutdown, and etcd's graceful
    stop waits for the apiserver's watch streams, which may never end.
    """
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def kubeconfig_dict(
    *,
    server: str,
    ca_pem: bytes,
    user: str,
    client: pki.KeyPair | None = None,
    token: str | None = None,
) -> dict[str, object]:
    """A single-context kubeconfig, with credentials inline so the file alone is enough."""
    credentials: dict[str, str] = {}
    if client is not None:
        credentials["client-certificate-data"] = base64.b64encode(client.cert_pem).decode()
        credentials["client-key-data"] = base64.b64encode(client.key_pem).decode()
    if token is not None:
        credentials["token"] = token
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": user, "context": {"cluster": "local", "user": user}}],
        "current-context": user,
    }


def write_kubeconfig(path: Path, config: dict[str, object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(config, handle)
    return path


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    command: list[str]


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on loopback. Use as a context manager."""

    workdir: Path | None = None
    bins: binaries.Binaries | None = None
    profiling: bool = False  # the apiserver's /debug/pprof, for benchmarks (bench.provisioning --profile)
    _processes: list[_Process] = field(default_factory=list)
    _owns_workdir: bool = False

    # Filled by start().
    server: str = ""
    etcd_url: str = ""
    ca: pki.KeyPair | None = None
    admin: pki.KeyPair | None = None
    admin_kubeconfig: Path | None = None
    audit_log: Path | None = None
    _kcm_client: pki.KeyPair | None = None
    # (start, end) in time.time() of each restart() until healthy again: what the apiserver answered
    # meanwhile (RBAC denies until its caches fill) is no fault of its clients.
    outages: list[tuple[float, float]] = field(default_factory=list)

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self, *, timeout: float = 120.0) -> None:
        self.bins = self.bins or binaries.ensure_binaries()
        if self.workdir is None:
            remove_abandoned_workdirs()
            self.workdir = Path(tempfile.mkdtemp(prefix=_WORKDIR_PREFIX))
            self._owns_workdir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "owner.pid").write_text(str(os.getpid()))
        try:
            pki_dir = self._write_pki()
            self._start_etcd()
            self._start_apiserver(pki_dir)
            self._wait_https(f"{self.server}/readyz", "kube-apiserver", timeout)
            self._start_controller_manager(pki_dir)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop in reverse start order (clients before servers); SIGKILL what does not exit in time."""
        for process in reversed(self._processes):
            if process.popen.poll() is None:
                process.popen.terminate()
            try:
                process.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within 10s; killing it", process.name)
                process.popen.kill()
                process.popen.wait()
        self._processes.clear()
        if self._owns_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def pids(self) -> dict[str, int]:
        """The running components' process ids, by name (etcd, kube-apiserver, ...)."""
        return {p.name: p.popen.pid for p in self._processes if p.popen.poll() is None}

    def audit_events(self, *, since: float, users: set[str] | None = None) -> Iterator[dict[str, Any]]:
        """Requests made after ``since`` (a time.time()) by ``users`` (default: everyone), from the
        apiserver's audit log: each request once (a watch at its start, others when complete)."""
        assert self.audit_log is not None
        with self.audit_log.open() as handle:
            for line in handle:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short when the apiserver was SIGKILLed (restart())
                long_running = event.get("verb") == "watch"
                if event.get("stage") != ("ResponseStarted" if long_running else "ResponseComplete"):
                    continue
                if users is not None and event["user"]["username"] not in users:
                    continue
                if datetime.datetime.fromisoformat(event["requestReceivedTimestamp"]).timestamp() >= since:
                    yield event

    def restart(self, name: str, *, down_for: float = 0.0, timeout: float = 120.0) -> None:
        """SIGKILL ``etcd`` or ``kube-apiserver`` (a crash, a node lost), keep it down for ``down_for``
        seconds, start it again with the same flags and ports, and wait until it is healthy."""
        health = {"etcd": f"{self.etcd_url}/health", "kube-apiserver": f"{self.server}/readyz"}[name]
        index = next(i for i, p in enumerate(self._processes) if p.name == name)
        old = self._processes[index]
        down_at = time.time()
        old.popen.kill()
        old.popen.wait()
        time.sleep(down_for)
        self._spawn(name, old.command)
        self._processes[index] = self._processes.pop()  # in its place: stop() walks the start order back
        if name == "etcd":
            self._wait_http(health, name, timeout)
        else:
            self._wait_https(health, name, timeout)
        self.outages.append((down_at, time.time()))

    def processes(self) -> dict[str, int]:
        """Name to pid of the running processes (for tests and `make down`)."""
        return {p.name: p.popen.pid for p in self._processes if p.popen.poll() is None}

    # ---- pieces ----------------------------------------------------------------------------

    def _write_pki(self) -> Path:
        assert self.workdir is not None
        pki_dir = self.workdir / "pki"
        pki_dir.mkdir(exist_ok=True)
        self.ca = pki.make_ca("vaop-local-ca")
        serving = pki.issue_serving(
            self.ca,
            dns_names=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            ip_addresses=["127.0.0.1", "10.0.0.1"],
        )
        self.admin = issue_client(self.ca, user="vaop-admin", group="system:masters")
        # The aggregation layer's front proxy, with a CA of its own as kubeadm makes it: aggregated
        # API servers (the operator's data API) trust requests signed by it, and only those.
        front_proxy_ca = pki.make_ca("vaop-local-front-proxy-ca")
        front_proxy = issue_client(front_proxy_ca, user="front-proxy-client")
        controller_manager = issue_client(self.ca, user="system:kube-controller-manager")
        sa_key, sa_pub = service_account_signing_key()
        files = {
            "ca.crt": self.ca.cert_pem,
            "ca.key": self.ca.key_pem,
            "apiserver.crt": serving.cert_pem,
            "apiserver.key": serving.key_pem,
            "sa.key": sa_key,
            "sa.pub": sa_pub,
            "front-proxy-ca.crt": front_proxy_ca.cert_pem,
            "front-proxy-client.crt": front_proxy.cert_pem,
            "front-proxy-client.key": front_proxy.key_pem,
        }
        for name, data in files.items():
            (pki_dir / name).write_bytes(data)
            (pki_dir / name).chmod(0o600)
        self._kcm_client = controller_manager
        return pki_dir

    def _spawn(self, name: str, command: list[str]) -> None:
        assert self.workdir is not None
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
                cwd=self.workdir,
            )
        self._processes.append(_Process(name, popen, log_path, command))

    def _start_etcd(self) -> None:
        assert self.bins is not None and self.workdir is not None
        client_port, peer_port = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self._spawn(
            "etcd",
            [
                str(self.bins.etcd),
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                # A throw-away store: fsync buys nothing here and costs most of the write latency.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._wait_http(f"{self.etcd_url}/health", "etcd", 60)

    def _start_apiserver(self, pki_dir: Path) -> None:
        assert self.bins is not None
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        assert self.workdir is not None
        # Metadata-level audit: who did what, when. Tests count the operator's requests with it.
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(_AUDIT_POLICY)
        self.audit_log = self.workdir / "audit.log"
        self._spawn(
            "kube-apiserver",
            [
                str(self.bins.kube_apiserver),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--tls-cert-file={pki_dir / 'apiserver.crt'}",
                f"--tls-private-key-file={pki_dir / 'apiserver.key'}",
                f"--client-ca-file={pki_dir / 'ca.crt'}",
                # The aggregation layer: the apiserver proxies data.videoanalyzer.io to the operator
                # with this client certificate and the user in X-Remote-* headers.
                f"--requestheader-client-ca-file={pki_dir / 'front-proxy-ca.crt'}",
                f"--proxy-client-cert-file={pki_dir / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={pki_dir / 'front-proxy-client.key'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--service-account-key-file={pki_dir / 'sa.pub'}",
                f"--service-account-signing-key-file={pki_dir / 'sa.key'}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                "--service-account-max-token-expiration=720h",
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                f"--profiling={str(self.profiling).lower()}",
                f"--audit-policy-file={policy}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                # Never rotated (the default rotates at 100 MB): tests read the whole session from it.
                "--audit-log-maxsize=1000000",
                "--audit-log-mode=blocking",
                f"--cert-dir={pki_dir}",
                "--v=0",
            ],
        )
        assert self.ca is not None and self.admin is not None and self.workdir is not None
        self.admin_kubeconfig = write_kubeconfig(
            self.workdir / "admin.kubeconfig",
            kubeconfig_dict(
                server=self.server, ca_pem=self.ca.cert_pem, user="vaop-admin", client=self.admin
            ),
        )

    def _start_controller_manager(self, pki_dir: Path) -> None:
        assert self.bins is not None and self.workdir is not None and self.ca is not None
        kubeconfig = write_kubeconfig(
            self.workdir / "controller-manager.kubeconfig",
            kubeconfig_dict(
                server=self.server,
                ca_pem=self.ca.cert_pem,
                user="system:kube-controller-manager",
                client=self._kcm_client,
            ),
        )
        port = free_port()
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bins.kube_controller_manager),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--controllers={CONTROLLERS}",
                f"--service-account-private-key-file={pki_dir / 'sa.key'}",
                f"--root-ca-file={pki_dir / 'ca.crt'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={pki_dir / 'kcm'}",
                # Each controller acts as its own ServiceAccount, with the bootstrap RBAC roles made for it.
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--v=0",
            ],
        )
        self._wait_https(f"https://127.0.0.1:{port}/healthz", "kube-controller-manager", 60)

    # ---- health --------------------------------------------------------------------------

    def _check_alive(self, name: str) -> None:
        for process in self._processes:
            if process.name == name and process.popen.poll() is not None:
                tail = process.log_path.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"{name} exited with {process.popen.returncode}:\n{tail}")

    def _wait(self, url: str, name: str, timeout: float, context: ssl.SSLContext | None) -> None:
        deadline = time.monotonic() + timeout
        last_error: object = None
        while time.monotonic() < deadline:
            self._check_alive(name)
            try:
                with urllib.request.urlopen(url, timeout=2, context=context) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as error:
                last_error = error
            time.sleep(0.2)
        raise TimeoutError(f"{name} not healthy at {url} after {timeout:.0f}s: {last_error}")

    def _wait_http(self, url: str, name: str, timeout: float) -> None:
        self._wait(url, name, timeout, None)

    def _wait_https(self, url: str, name: str, timeout: float) -> None:
        # Health endpoints are open to anonymous users; the CA check still applies to the apiserver.
        context = ssl.create_default_context()
        if name == "kube-controller-manager":
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # self-signed serving cert made by the process itself
        else:
            assert self.ca is not None
            context.load_verify_locations(cadata=self.ca.cert_pem.decode())
        self._wait(url, name, timeout, context)
