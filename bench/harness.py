"""What every benchmark needs: a control plane, the chart, the operator with the chart's identity.

Benchmarks report ratios against a floor measured in the same run on the same machine (bare
apiserver writes, bare RSA operations), never absolute targets.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import gc
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys
from kubernetes import client, watch

from vaop import models
from vaop.providers import kubernetes as kubernetes_provider
from vaopdev import cluster, environment


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A working folder for one benchmark run, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="vaop-bench-") as folder:
        yield Path(folder)


@contextlib.contextmanager
def environment_running(
    workdir: Path, *, settings: dict[str, str] | None = None, profiling: bool = False
) -> Iterator[tuple[cluster.ControlPlane, client.ApiClient, environment.OperatorProcess]]:
    """A local control plane (``profiling``: its apiserver serves /debug/pprof) with the chart
    installed and the operator running."""
    with cluster.ControlPlane(profiling=profiling) as plane:
        environment.helm_install(plane)
        operator = environment.OperatorProcess(
            environment.operator_identity(plane), workdir / "operator.log", settings=settings
        )
        operator.start()
        try:
            with environment.admin_api(plane) as api:
                yield plane, api, operator
        finally:
            operator.stop()


@contextlib.contextmanager
def process_running(command: list[str], kubeconfig: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A baseline process (output dropped) with ``kubeconfig``, terminated when the block ends."""
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, KUBECONFIG=str(kubeconfig)),
    )
    try:
        yield process
    finally:
        process.terminate()
        process.wait()


def namespace(api: client.ApiClient, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def timed(function: Callable[[], Any]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The benchmark's own garbage collector off while it times reads: a full collection of what a
    client decoded (a list of 1,000 objects is tens of thousands of dicts) took 70 ms, and the same
    sequence of reads each round put it on the same request, whichever server answered it."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def parallel(items: list[Any], function: Callable[[Any], Any], *, workers: int = 8) -> None:
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(function, items))


@dataclass(frozen=True)
class SecretFloor:
    """Seconds for ``count`` bare Secret creates, and for ``count`` bare updates of them."""

    creates: float
    updates: float

    @property
    def total(self) -> float:
        return self.creates + self.updates


def raw_secret_writes(api: client.ApiClient, ns: str, count: int, *, workers: int = 8) -> SecretFloor:
    """The floors of the account-key Secret's writes, each timed as what it names: ``count`` creates
    of envelope-sized data, then ``count`` updates (a PUT of the object already read, as the operator
    updates from its watch cache: the reads are not timed)."""
    core = client.CoreV1Api(api)
    payload = {"envelope": base64.b64encode(b"x" * 700).decode()}

    def create(i: int) -> None:
        core.create_namespaced_secret(
            ns, client.V1Secret(metadata=client.V1ObjectMeta(name=f"raw-{i}"), data=payload)
        )

    read: dict[int, client.V1Secret] = {}

    def get(i: int) -> None:
        read[i] = core.read_namespaced_secret(f"raw-{i}", ns)

    def update(i: int) -> None:
        secret = read[i]
        secret.data = {"envelope": base64.b64encode(b"y" * 700).decode()}
        core.replace_namespaced_secret(f"raw-{i}", ns, secret)

    creates = timed(lambda: parallel(list(range(count)), create, workers=workers))
    parallel(list(range(count)), get, workers=workers)
    updates = timed(lambda: parallel(list(range(count)), update, workers=workers))
    return SecretFloor(creates, updates)


def raw_status_patches(
    api: client.ApiClient, ns: str, *, count: int | None = None, workers: int = 8
) -> float:
    """The second write a re-wrap must make: one merge patch of the status of each account in
    ``ns`` (or of the first ``count``), as the operator's (``accountKey.wrappedBy.keyVersion`` and
    ``wrappedAt``); run with the operator stopped.
    A custom resource's status write costs the apiserver several times a Secret's (schema
    coercion, validation, managed fields), so this floor is the honest one for a re-wrap."""
    custom = client.CustomObjectsApi(api)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def patch(name: str) -> None:
        body = {"status": {"accountKey": {"wrappedBy": {"keyVersion": "floor"}, "wrappedAt": stamp}}}
        custom.patch_namespaced_custom_object_status(
            models.GROUP,
            models.VERSION,
            ns,
            "videoanalyzeraccounts",
            name,
            body,
            _content_type="application/merge-patch+json",
        )

    names = [account["metadata"]["name"] for account in accounts(api, ns)][:count]
    return timed(lambda: parallel(names, patch, workers=workers))


def accounts(api: client.ApiClient, ns: str) -> list[dict[str, Any]]:
    return client.CustomObjectsApi(api).list_namespaced_custom_object(  # type: ignore[no-any-return]
        models.GROUP, models.VERSION, ns, "videoanalyzeraccounts"
    )["items"]


def wait_until(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark did not converge")
        time.sleep(interval)


def customer_key_setup(api: client.ApiClient, ns: str, vault_spec: dict[str, Any], key_name: str) -> None:
    """KeyVault "vault" and CustomerKey "key" in ``ns``."""
    custom = client.CustomObjectsApi(api)
    for kind, plural, name, spec in [
        ("KeyVault", "keyvaults", "vault", vault_spec),
        ("CustomerKey", "customerkeys", "key", {"vaultRef": {"name": "vault"}, "keyName": key_name}),
    ]:
        body = {"apiVersion": models.API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}
        custom.create_namespaced_custom_object(models.GROUP, models.VERSION, ns, plural, body)


def create_customer_key_accounts(api: client.ApiClient, ns: str, count: int, *, identity: str) -> None:
    """``count`` accounts on CustomerKey "key", all acting as one ServiceAccount (one vault pair)."""
    encryption = {
        "type": "CustomerKey",
        "keyRef": {"name": "key"},
        "identity": {"serviceAccountName": identity},
    }
    _create_accounts(api, ns, range(count), encryption)


# Creates refused because the admission webhook did not answer in time (its failurePolicy is Fail),
# and made again, by namespace: a benchmark that loads the machine reports them.
WEBHOOK_TIMEOUTS: collections.Counter[str] = collections.Counter()


def _create_accounts(api: client.ApiClient, ns: str, numbers: range, encryption: dict[str, Any]) -> None:
    custom = client.CustomObjectsApi(api)

    def create(i: int) -> None:
        body: dict[str, Any] = {
            "apiVersion": models.API_VERSION,
            "kind": "VideoAnalyzerAccount",
            "metadata": {"name": f"acct-{i:05d}"},
            "spec": {"region": "westeurope", "encryption": encryption},
        }
        for attempt in range(1, 6):
            try:
                custom.create_namespaced_custom_object(
                    models.GROUP, models.VERSION, ns, "videoanalyzeraccounts", body
                )
                return
            except client.exceptions.ApiException as error:
                if error.status == 409 and attempt > 1:
                    return  # an earlier attempt did get through
                if error.status != 500 or "failed calling webhook" not in str(error.body) or attempt == 5:
                    raise
                WEBHOOK_TIMEOUTS[ns] += 1
                time.sleep(1.0)

    parallel(list(numbers), create)


def all_wrapped_by(api: client.ApiClient, ns: str, count: int, version: str) -> bool:
    items = accounts(api, ns)
    return len(items) == count and all(
        (i.get("status", {}).get("accountKey") or {}).get("wrappedBy", {}).get("keyVersion") == version
        for i in items
    )


def kubernetes_key_tenant(api: client.ApiClient, ns: str, *, identity: str) -> None:
    """KeyVault "vault" (kubernetes provider, keys in ``ns``), CustomerKey "key" on key "kek", and the
    ServiceAccount ``identity`` granted to read the key Secrets (RoleBinding "keys")."""
    vault = {
        "region": "westeurope",
        "provider": {"kubernetes": {"softDelete": True, "purgeProtection": True}},
    }
    customer_key_setup(api, ns, vault, "kek")
    client.CoreV1Api(api).create_namespaced_service_account(
        ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=identity))
    )
    client.RbacAuthorizationV1Api(api).create_namespaced_role(
        ns,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="keys"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=["get", "list"])],
        ),
    )
    grant_keys(api, ns, identity=identity)


def grant_keys(api: client.ApiClient, ns: str, *, identity: str) -> None:
    client.RbacAuthorizationV1Api(api).create_namespaced_role_binding(
        ns,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="keys"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="keys"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=identity, namespace=ns)],
        ),
    )


def revoke_keys(api: client.ApiClient, ns: str) -> None:
    client.RbacAuthorizationV1Api(api).delete_namespaced_role_binding("keys", ns)


def rsa_pem(bits: int) -> bytes:
    key = rsa_keys.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def put_key_version(api: client.ApiClient, ns: str, version: int, *, bits: int = 2048) -> None:
    """Version ``version`` of key "kek": a fresh RSA key in a Secret, as the tenant makes it."""
    client.CoreV1Api(api).create_namespaced_secret(
        ns,
        client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=f"kek-v{version}",
                labels={
                    kubernetes_provider.LABEL_KEY_NAME: "kek",
                    kubernetes_provider.LABEL_KEY_VERSION: str(version),
                },
            ),
            data={kubernetes_provider.DATA_KEY: base64.b64encode(rsa_pem(bits)).decode()},
        ),
    )


def create_system_key_accounts(api: client.ApiClient, ns: str, count: int, *, first: int = 0) -> None:
    """``count`` SystemKey accounts, named acct-<first> onwards."""
    _create_accounts(api, ns, range(first, first + count), {"type": "SystemKey"})


def all_active(
    api: client.ApiClient, ns: str, count: int, *, customer_key_version: str | None = None
) -> bool:
    """All ``count`` accounts Active; those on a customer key wrapped by ``customer_key_version``."""
    items = accounts(api, ns)

    def settled(item: dict[str, Any]) -> bool:
        status = item.get("status") or {}
        wrapped = (status.get("accountKey") or {}).get("wrappedBy") or {}
        on_version = customer_key_version is None or wrapped.get("type") != "CustomerKey"
        return status.get("state") == "Active" and (
            on_version or wrapped.get("keyVersion") == customer_key_version
        )

    return len(items) == count and all(settled(i) for i in items)


def key_check_values(api: client.ApiClient, ns: str) -> dict[str, str]:
    return {i["metadata"]["name"]: i["status"]["accountKey"]["keyCheckValue"] for i in accounts(api, ns)}


def metrics_text(metrics_url: str) -> str:
    """The operator's Prometheus exposition."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:  # noqa: S310 (our loopback URL)
        return str(response.read().decode())


def watch_until(
    api: client.ApiClient,
    ns: str,
    count: int,
    done: Callable[[dict[str, Any]], bool],
    *,
    timeout: float = 3600,
) -> float:
    """Watch the accounts of ``ns`` until ``count`` of them are ``done``; the seconds that took.

    A watch, not a polled LIST: listing thousands of accounts every half second would load the
    apiserver and the machine, and with them the figure measured (for the operator and baselines alike).
    """
    started = time.perf_counter()
    finished: set[str] = set()
    version = ""
    stream = watch.Watch()
    deadline = time.monotonic() + timeout
    while len(finished) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(finished)} of {count} accounts in {ns} done after {timeout} s")
        if not version:  # (re)list: what is done already, and where the watch starts
            listing = client.CustomObjectsApi(api).list_namespaced_custom_object(
                models.GROUP, models.VERSION, ns, "videoanalyzeraccounts"
            )
            finished = {i["metadata"]["name"] for i in listing["items"] if done(i)}
            version = listing["metadata"]["resourceVersion"]
            continue
        try:
            for event in stream.stream(
                client.CustomObjectsApi(api).list_namespaced_custom_object,
                models.GROUP,
                models.VERSION,
                ns,
                "videoanalyzeraccounts",
                resource_version=version,
                timeout_seconds=30,
            ):
                obj = event["object"]
                name = obj["metadata"]["name"]
                version = obj["metadata"]["resourceVersion"]
                if event["type"] != "DELETED" and done(obj):
                    finished.add(name)
                else:
                    finished.discard(name)
                if len(finished) >= count:
                    stream.stop()
        except client.exceptions.ApiException as error:
            if error.status != 410:
                raise
            version = ""  # too old: list again
    return time.perf_counter() - started


def active(account: dict[str, Any]) -> bool:
    return (account.get("status") or {}).get("state") == "Active"


def wrapped_by(version: str) -> Callable[[dict[str, Any]], bool]:
    def done(account: dict[str, Any]) -> bool:
        status = account.get("status") or {}
        wrapped = (status.get("accountKey") or {}).get("wrappedBy") or {}
        return status.get("state") == "Active" and wrapped.get("keyVersion") == version

    return done


def cpu_pids(plane: cluster.ControlPlane, controller: int) -> dict[str, int]:
    """The processes whose CPU a baseline comparison counts: the controller, the apiserver, etcd."""
    pids = plane.pids()
    return {"controller": controller, "kube-apiserver": pids["kube-apiserver"], "etcd": pids["etcd"]}


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User plus system CPU seconds each process has used so far (from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for name, pid in pids.items():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        found[name] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return found


@contextlib.contextmanager
def cpu_used(pids: dict[str, int]) -> Iterator[dict[str, float]]:
    """CPU seconds each process used while the block ran."""
    before = cpu_seconds(pids)
    used: dict[str, float] = {}
    try:
        yield used
    finally:
        after = cpu_seconds(pids)
        used.update({name: after[name] - before[name] for name in pids})


def request_counts(
    plane: cluster.ControlPlane, *, since: float, users: set[str] | None = None
) -> collections.Counter[str]:
    """Requests to the apiserver after ``since`` (time.time()), as "<verb> <resource>[/<subresource>]"
    (the audit log; watches counted once, when opened)."""
    counts: collections.Counter[str] = collections.Counter()
    for event in plane.audit_events(since=since, users=users):
        ref = event.get("objectRef") or {}
        resource = ref.get("resource", event.get("requestURI", "?"))
        if ref.get("subresource"):
            resource += "/" + ref["subresource"]
        counts[f"{event['verb']} {resource}"] += 1
    return counts


def operator_user() -> str:
    return f"system:serviceaccount:{environment.OPERATOR_NAMESPACE}:{environment.OPERATOR_SERVICE_ACCOUNT}"


def print_requests(title: str, counts: collections.Counter[str], per: int) -> None:
    total = sum(counts.values())
    print(f"{title}: {total} requests, {total / per:.2f} per account")
    for what, n in counts.most_common():
        print(f"  {what:45s} {n:7d}  {n / per:6.2f}/account")


@contextlib.contextmanager
def profiled(pid: int, *, enabled: bool = True, top: int = 25) -> Iterator[list[str]]:
    """Sample ``pid`` with py-spy while the block runs; then the list holds the functions where it
    spent most time (own time, the leaf frames, and total time, anywhere on the stack)."""
    found: list[str] = []
    if not enabled:
        yield found
        return
    with tempfile.TemporaryDirectory(prefix="vaop-profile-") as folder:
        output = Path(folder) / "stacks.txt"
        spy = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--output",
                str(output),
                "--rate",
                "200",
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield found
        finally:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        own: collections.Counter[str] = collections.Counter()
        total: collections.Counter[str] = collections.Counter()
        samples = 0
        for line in output.read_text().splitlines() if output.exists() else ():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue  # not a stack (a blank line)
            frames = [_frame(frame) for frame in stack.split(";")]
            samples += int(count)
            own[frames[-1][0]] += int(count)
            for frame, ours in set(frames):
                total[frame] += int(count) if ours else 0
        found.append(f"{samples} samples; own time (the innermost frame):")
        found += [f"  {100 * n / samples:5.1f}%  {frame}" for frame, n in own.most_common(top)]
        found.append("total time of the operator's own functions (anywhere on the stack):")
        found += [f"  {100 * n / samples:5.1f}%  {frame}" for frame, n in total.most_common(top) if n]


@contextlib.contextmanager
def apiserver_profiled(
    plane: cluster.ControlPlane,
    *,
    seconds: int = 10,
    enabled: bool = True,
    top: int = 30,
    keep_as: Path | None = None,
) -> Iterator[list[str]]:
    """The kube-apiserver's CPU profile (its /debug/pprof; the plane made with profiling=True) over
    the first ``seconds`` of the block; then the list holds ``go tool pprof -top -cum``'s lines,
    and the profile is copied to ``keep_as`` (to compare two: ``go tool pprof -diff_base``)."""
    found: list[str] = []
    if not enabled:
        yield found
        return
    assert plane.bins is not None and plane.admin_kubeconfig is not None
    with tempfile.TemporaryDirectory(prefix="vaop-pprof-") as folder:
        output = Path(folder) / "cpu.pprof"
        with output.open("wb") as sink:
            fetch = subprocess.Popen(
                [
                    str(plane.bins.kubectl),
                    "--kubeconfig",
                    str(plane.admin_kubeconfig),
                    "get",
                    "--raw",
                    f"/debug/pprof/profile?seconds={seconds}",
                ],
                stdout=sink,
            )
            try:
                yield found
            finally:
                fetch.wait(timeout=seconds + 60)
        go = shutil.which("go") or "go"  # Go builds the local control plane: it is here
        shown = subprocess.run(
            [go, "tool", "pprof", "-top", "-cum", f"-nodecount={top}", str(output)],
            capture_output=True,
            text=True,
            check=False,
        )
        found += shown.stdout.splitlines() or [f"no profile: {shown.stderr.strip()}"]
        if keep_as is not None:
            shutil.copyfile(output, keep_as)
            found.append(f"(the profile: {keep_as})")


def kept_profile(label: str) -> Path:
    """Where --profile leaves an apiserver profile, named by the run's first word."""
    return Path(tempfile.gettempdir()) / f"vaop-apiserver-{label.split(maxsplit=1)[0].lower()}.pprof"


def _frame(raw: str) -> tuple[str, bool]:
    """("function (file.py)", whether the file is the operator's) from py-spy's "function (path:line)"."""
    function, _, where = raw.partition(" (")
    path = where.rsplit(":", 1)[0]
    return f"{function} ({path.rsplit('/', 1)[-1]})", bool(re.search(r"(^|/)vaop/", path))
