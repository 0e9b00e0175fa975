"""The account's data (AccessPolicy, Video) through the aggregated API, as users and tenants meet it:
kubectl against the real kube-apiserver, which proxies data.videoanalyzer.io to the operator."""

from __future__ import annotations

import json
import selectors
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from typing import IO, Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client, watch

from tests import helpers
from tests.integration import legacy, tenant
from tests.integration.conftest import WITHIN_ONE_INTERVAL, Kubectl, OperatorProcess
from vaop.dataapi import kinds
from vaopdev import binaries, cluster

pytestmark = pytest.mark.usefixtures("operator")
GROUP, VERSION = "data.videoanalyzer.io", "v1alpha1"
EXAMPLE = binaries.REPO_ROOT / "examples" / "50-data.yaml"


def video(
    namespace: str, name: str, *, account: str = "studio", title: str = "Lobby camera", **labels: str
) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Video",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {
                "accountName": account,
                "title": title,
                "description": "Front door, ground floor",
                "archival": {"retentionPeriod": "P30D"},
            },
        }
    )


POLICY = """
apiVersion: data.videoanalyzer.io/v1alpha1
kind: AccessPolicy
metadata: {{name: viewers, namespace: {namespace}}}
spec:
  accountName: studio
  role: Reader
  authentication:
    issuers: [https://login.example.com]
    audiences: [videoanalyzer]
    claims: [{{name: team, value: blue}}]
    # "n" quoted: YAML 1.1 reads a bare n as false
    keys: [{{type: RSA, kid: k1, alg: RS256, "n": "0vx7agoebGcQSuuPiLJXZptN", "e": AQAB}}]
"""


def _json(kubectl: Kubectl, *args: str) -> Any:
    return json.loads(kubectl(*args, "-o", "json").stdout)


def _active_account(admin: client.ApiClient, namespace: str, name: str = "studio") -> None:
    tenant.account(admin, namespace, name)
    tenant.wait_condition(admin, namespace, name, "Ready", "True")


def test_discovery_and_explain(kubectl: Kubectl) -> None:
    resources = kubectl("api-resources", f"--api-group={GROUP}", "-o", "wide").stdout
    assert "accesspolicies" in resources and " vap " in resources
    assert "videos" in resources and " vid " in resources
    # The apiserver aggregates OpenAPI on its own schedule, backing off while the APIService was not
    # yet available at start: kubectl explain works once it has fetched the operator's document.
    explained = helpers.eventually(
        lambda: (
            result.stdout
            if (result := kubectl("explain", "video.spec.title", check=False)).returncode == 0
            else None
        ),
        timeout=120,
        interval=2,
    )
    assert "Title shown to viewers" in explained
    assert "Keys that may sign tokens" in kubectl("explain", "accesspolicy.spec.authentication").stdout


def test_apply_then_read_back_what_was_written(
    kubectl: Kubectl, admin: client.ApiClient, namespace: str
) -> None:
    _active_account(admin, namespace)
    kubectl("apply", "-f", "-", stdin=video(namespace, "lobby", camera="lobby"))
    kubectl("apply", "-f", "-", stdin=POLICY.format(namespace=namespace))
    table = kubectl("get", "videos", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "ACCOUNT", "TITLE", "AGE"]
    assert table[1].split()[:4] == ["lobby", "studio", "Lobby", "camera"]
    assert kubectl("get", "vap", "-n", namespace).stdout.splitlines()[1].split()[:3] == [
        "viewers",
        "studio",
        "Reader",
    ]
    obj = _json(kubectl, "get", "video", "lobby", "-n", namespace)
    assert obj["spec"] == yaml.safe_load(video(namespace, "lobby"))["spec"]
    assert obj["metadata"]["labels"] == {"camera": "lobby"}
    assert "kubectl.kubernetes.io/last-applied-configuration" in obj["metadata"]["annotations"]
    ready = helpers.condition(obj, "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("True", "Sealed")
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"] == 1
    policy = _json(kubectl, "get", "accesspolicy", "viewers", "-n", namespace)
    assert policy["spec"]["authentication"]["keys"][0]["kid"] == "k1"
    again = kubectl("apply", "-f", "-", stdin=video(namespace, "lobby", camera="lobby")).stdout
    assert "unchanged" in again


def test_server_side_apply_owns_fields_and_reports_conflicts(
    kubectl: Kubectl, admin: client.ApiClient, namespace: str
) -> None:
    _active_account(admin, namespace)
    kubectl(
        "apply",
        "--server-side",
        "--field-manager=alice",
        "-f",
        "-",
        stdin=video(namespace, "hall", camera="hall"),
    )
    conflict = kubectl(
        "apply",
        "--server-side",
        "--field-manager=bob",
        "-f",
        "-",
        stdin=video(namespace, "hall", title="Hall"),
        check=False,
    )
    assert conflict.returncode != 0
    assert 'conflict with "alice"' in conflict.stderr and ".spec.title" in conflict.stderr
    kubectl(
        "apply",
        "--server-side",
        "--field-manager=bob",
        "--force-conflicts",
        "-f",
        "-",
        stdin=video(namespace, "hall", title="Hall"),
    )
    obj = _json(kubectl, "get", "video", "hall", "-n", namespace, "--show-managed-fields")
    assert obj["spec"]["title"] == "Hall" and obj["metadata"]["generation"] == 2
    owners = {entry["manager"]: entry["fieldsV1"] for entry in obj["metadata"]["managedFields"]}
    assert "f:title" in owners["bob"]["f:spec"] and "f:title" not in owners["alice"]["f:spec"]
    # alice stops applying her label: it goes, since nobody else owns it
    slim = yaml.safe_load(video(namespace, "hall"))
    slim["metadata"].pop("labels")
    slim["spec"].pop("title")
    kubectl("apply", "--server-side", "--field-manager=alice", "-f", "-", stdin=yaml.safe_dump(slim))
    assert "labels" not in _json(kubectl, "get", "video", "hall", "-n", namespace)["metadata"]


def test_patches_and_optimistic_concurrency(
    kubectl: Kubectl, admin: client.ApiClient, namespace: str
) -> None:
    _active_account(admin, namespace)
    kubectl("create", "-f", "-", stdin=video(namespace, "gate"))
    kubectl("-n", namespace, "patch", "video", "gate", "--type=merge", "-p", '{"spec":{"title":"Gate A"}}')
    kubectl(
        "-n",
        namespace,
        "patch",
        "video",
        "gate",
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/spec/description","value":"North"}]',
    )
    kubectl(
        "-n", namespace, "patch", "video", "gate", "-p", '{"metadata":{"labels":{"zone":"north"}}}'
    )  # strategic
    obj = _json(kubectl, "get", "video", "gate", "-n", namespace)
    assert (obj["spec"]["title"], obj["spec"]["description"], obj["metadata"]["labels"]) == (
        "Gate A",
        "North",
        {"zone": "north"},
    )
    assert obj["metadata"]["generation"] == 3  # the label changed no spec
    stale = dict(obj, spec={**obj["spec"], "title": "Gate B"})
    stale["metadata"] = {**obj["metadata"], "resourceVersion": "1"}
    refused = kubectl("replace", "-f", "-", stdin=json.dumps(stale), check=False)
    assert refused.returncode != 0 and "the object has been modified" in refused.stderr
    kubectl("replace", "-f", "-", stdin=json.dumps(dict(obj, spec={**obj["spec"], "title": "Gate B"})))
    assert _json(kubectl, "get", "video", "gate", "-n", namespace)["spec"]["title"] == "Gate B"
    immutable = kubectl(
        "-n",
        namespace,
        "patch",
        "video",
        "gate",
        "--type=merge",
        "-p",
        '{"spec":{"accountName":"other"}}',
        check=False,
    )
    assert immutable.returncode != 0 and "field is immutable" in immutable.stderr


def test_selectors_pagination_and_dry_run(kubectl: Kubectl, admin: client.ApiClient, namespace: str) -> None:
    _active_account(admin, namespace)
    for i in range(5):
        kubectl("create", "-f", "-", stdin=video(namespace, f"cam-{i}", zone="north" if i % 2 else "south"))
    names = kubectl("get", "videos", "-n", namespace, "-l", "zone=north", "-o", "name").stdout.split()
    assert names == ["video.data.videoanalyzer.io/cam-1", "video.data.videoanalyzer.io/cam-3"]
    chunked = kubectl("get", "videos", "-n", namespace, "--chunk-size=2", "-o", "name").stdout.split()
    assert len(chunked) == 5
    by_field = kubectl(
        "get", "videos", "-n", namespace, "--field-selector=spec.accountName=studio", "-o", "name"
    )
    assert len(by_field.stdout.split()) == 5
    unsupported = kubectl("get", "videos", "-n", namespace, "--field-selector=spec.title=x", check=False)
    assert unsupported.returncode != 0 and "field label not supported" in unsupported.stderr
    kubectl("create", "--dry-run=server", "-f", "-", stdin=video(namespace, "ghost"))
    assert kubectl("get", "video", "ghost", "-n", namespace, check=False).returncode != 0


def test_lists_come_from_the_cache_and_show_every_finished_write(
    admin: client.ApiClient, namespace: str
) -> None:
    """Lists are served from each replica's cache of SealedObjects, and a list without a
    resourceVersion is still consistent: a write that finished before it shows, whichever way it
    was made. Deleting the storage object directly reaches the cache only through its watch, so
    only the consistent-read marker makes the list right at once."""
    _active_account(admin, namespace)
    data, storage = client.CustomObjectsApi(admin), client.CustomObjectsApi(admin)

    def names(**options: Any) -> list[str]:
        listed = data.list_namespaced_custom_object(GROUP, VERSION, namespace, "videos", **options)
        return [item["metadata"]["name"] for item in listed["items"]]

    for i in range(12):
        data.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "videos", yaml.safe_load(video(namespace, f"v-{i:02d}"))
        )
        assert f"v-{i:02d}" in names(), "a create that finished is in the next list"
    for i in range(0, 12, 2):
        storage.delete_namespaced_custom_object(
            "internal.videoanalyzer.io",
            "v1alpha1",
            namespace,
            "sealedobjects",
            kinds.KINDS["videos"].storage_name(f"v-{i:02d}"),
        )
        assert f"v-{i:02d}" not in names(), "a delete in storage that finished is not in the next list"
    assert names(resource_version="0") == [f"v-{i:02d}" for i in range(1, 12, 2)]

    # Pages come from one snapshot: an object made between them is not in the later page.
    first = data.list_namespaced_custom_object(GROUP, VERSION, namespace, "videos", limit=4)
    assert [o["metadata"]["name"] for o in first["items"]] == ["v-01", "v-03", "v-05", "v-07"]
    assert first["metadata"]["remainingItemCount"] == 2
    data.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "videos", yaml.safe_load(video(namespace, "v-99"))
    )
    rest = data.list_namespaced_custom_object(
        GROUP, VERSION, namespace, "videos", limit=4, _continue=first["metadata"]["continue"]
    )
    assert [o["metadata"]["name"] for o in rest["items"]] == ["v-09", "v-11"]
    assert rest["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert "v-99" in names()

    # A version the cache has not reached is waited for, then refused as the apiserver refuses it.
    ahead = str(int(first["metadata"]["resourceVersion"]) + 10**9)
    with pytest.raises(client.ApiException) as refused:
        names(resource_version=ahead)
    assert refused.value.status == 504 and "Too large resource version" in str(refused.value.body)

    # A GET with a resourceVersion comes from the cache too ("0": any recent state; a number: at
    # least that version), as the apiserver serves its own such GETs; one without reads storage.
    def get(name: str, version: str) -> dict[str, Any]:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/videos/{name}"
        return helpers.read_at(admin, path, version)  # type: ignore[no-any-return]

    listed = first["metadata"]["resourceVersion"]
    assert get("v-01", listed)["spec"]["title"] == "Lobby camera", "opened, from the cache"
    assert get("v-99", "0")["metadata"]["name"] == "v-99"
    storage.delete_namespaced_custom_object(
        "internal.videoanalyzer.io",
        "v1alpha1",
        namespace,
        "sealedobjects",
        kinds.KINDS["videos"].storage_name("v-01"),
    )
    with pytest.raises(client.ApiException) as gone:
        data.get_namespaced_custom_object(GROUP, VERSION, namespace, "videos", "v-01")
    assert gone.value.status == 404, "a GET without a version shows the finished delete at once"
    after = data.list_namespaced_custom_object(GROUP, VERSION, namespace, "videos")["metadata"]
    with pytest.raises(client.ApiException) as gone:
        get("v-01", after["resourceVersion"])
    assert gone.value.status == 404, "at a version after the delete, the cache no longer has it"
    with pytest.raises(client.ApiException) as refused:
        get("v-03", ahead)
    assert refused.value.status == 504 and "Too large resource version" in str(refused.value.body)

    # The marker the consistent reads write holds nothing and is never backed up.
    markers = storage.list_cluster_custom_object(
        "internal.videoanalyzer.io",
        "v1alpha1",
        "sealedobjects",
        label_selector="internal.videoanalyzer.io/kind=Progress",
    )["items"]
    assert [m["metadata"]["name"] for m in markers] == ["vaop-progress"]
    assert markers[0]["metadata"]["labels"]["velero.io/exclude-from-backup"] == "true"
    assert markers[0]["spec"]["ciphertext"] == ""


# Every operator the apiserver's label selectors accept, and some it refuses.
LABEL_SELECTORS = [
    "zone=north",
    "zone==north",
    "zone!=north",
    "zone in (north,east)",
    "zone notin (north)",
    "zone in (north),tier notin (1)",
    "gold",
    "!gold",
    "tier>1",
    "tier<3",
    "tier>1,zone=south",
    "tier > 1,!gold",
    "zone",
    "zone=",
    "zone!=",
    "example.com/team=a",
    "!example.com/team",
    "zone in ()",
    "tier>a",
    "zone=no rth",
    "=north",
    "zone in (north",
    "tier>1>2",
    "zone=" + "n" * 64,
    "-bad=x",
]


def test_label_selectors_select_what_the_apiserver_selects(
    kubectl: Kubectl, admin: client.ApiClient, namespace: str
) -> None:
    """The same labels on Videos (data API) and on ConfigMaps (the apiserver): every selector picks
    the same names from both, or both refuse it."""
    _active_account(admin, namespace)
    labelled = {
        "a": {"zone": "north", "tier": "1"},
        "b": {"zone": "south", "tier": "2", "gold": "yes"},
        "c": {"zone": "east", "tier": "3", "example.com/team": "a"},
        "d": {"zone": "south", "tier": "x"},
        "e": {"tier": "10", "zone": ""},
        "f": {},
    }
    for name, labels in labelled.items():
        kubectl("create", "-f", "-", stdin=video(namespace, name, **labels))
        client.CoreV1Api(admin).create_namespaced_config_map(
            namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels))
        )

    def selected(resource: str, selector: str) -> str | list[str]:
        found = kubectl("get", resource, "-n", namespace, "-l", selector, "-o", "name", check=False)
        if found.returncode != 0:
            return "refused"
        names = [line.rsplit("/", 1)[1] for line in found.stdout.split()]
        return sorted(n for n in names if n in labelled)  # kube-root-ca.crt is no Video

    for selector in LABEL_SELECTORS:
        assert selected("videos", selector) == selected("configmaps", selector), selector


def test_watch_streams_changes_and_resumes(admin: client.ApiClient, kubectl: Kubectl, namespace: str) -> None:
    _active_account(admin, namespace)
    custom = client.CustomObjectsApi(admin)
    listing = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "videos")
    start = listing["metadata"]["resourceVersion"]
    kubectl("create", "-f", "-", stdin=video(namespace, "w1"))
    kubectl("-n", namespace, "patch", "video", "w1", "--type=merge", "-p", '{"spec":{"title":"Changed"}}')
    kubectl("-n", namespace, "delete", "video", "w1")
    events = []
    stream = watch.Watch()
    for event in stream.stream(
        custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        "videos",
        resource_version=start,
        timeout_seconds=5,
    ):
        events.append((event["type"], event["object"]["spec"].get("title")))
        if event["type"] == "DELETED":
            stream.stop()
    assert events == [("ADDED", "Lobby camera"), ("MODIFIED", "Changed"), ("DELETED", "Changed")]
    # kubectl get -w: a watch of Tables, one row per change
    assert kubectl.kubeconfig is not None
    watcher = subprocess.Popen(
        [
            str(kubectl.binary),
            "--kubeconfig",
            str(kubectl.kubeconfig),
            "get",
            "videos",
            "-n",
            namespace,
            "--watch-only",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,  # unbuffered: a line read is all there was, so select() tells of the next one
    )
    try:
        assert watcher.stdout is not None
        # kubectl gives no sign that its watch is open: create until one shows (a create made
        # before the watch opened is, rightly, never shown), each read bounded.
        lines: list[list[str]] = []
        for attempt in range(5):
            kubectl("create", "-f", "-", stdin=video(namespace, f"w{attempt}", title="Watched"))
            lines += [line.split() for line in _lines_within(watcher.stdout, seconds=5)]
            if any(line[:1] == [f"w{attempt}"] for line in lines):
                break
        assert lines[0] == ["NAME", "ACCOUNT", "TITLE", "AGE"]
        assert [f"w{attempt}", "studio", "Watched"] in [line[:3] for line in lines[1:]]
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)


def _lines_within(stream: IO[bytes], *, seconds: float) -> list[str]:
    """The lines ``stream`` gives within ``seconds`` (a read never blocks past them)."""
    lines, deadline = [], time.monotonic() + seconds
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0 and selector.select(timeout=left):
            line = stream.readline()
            if not line:
                break
            lines.append(line.decode())
    return lines


def test_errors_are_status_objects_that_say_what_to_fix(
    kubectl: Kubectl, admin: client.ApiClient, namespace: str
) -> None:
    _active_account(admin, namespace)
    missing = kubectl("get", "video", "nowhere", "-n", namespace, check=False)
    assert 'videos.data.videoanalyzer.io "nowhere" not found' in missing.stderr
    bad = yaml.safe_load(video(namespace, "bad"))
    bad["spec"]["archival"]["retentionPeriod"] = "thirty days"
    invalid = kubectl("create", "-f", "-", stdin=yaml.safe_dump(bad), check=False)
    assert "spec.archival.retentionPeriod" in invalid.stderr
    bad["spec"]["archival"]["retentionPeriod"] = "P30D"
    bad["spec"]["colour"] = "red"
    unknown = kubectl("create", "-f", "-", stdin=yaml.safe_dump(bad), check=False)
    assert unknown.returncode != 0 and "spec.colour" in unknown.stderr and "unknown field" in unknown.stderr
    kubectl(
        "create", "--validate=false", "-f", "-", stdin=yaml.safe_dump(bad)
    )  # fieldValidation=Ignore: dropped
    assert "colour" not in _json(kubectl, "get", "video", "bad", "-n", namespace)["spec"]


def test_writes_need_an_active_account_of_the_namespace(
    kubectl: Kubectl, admin: client.ApiClient, namespace: str, keys_namespace: str
) -> None:
    nowhere = kubectl("create", "-f", "-", stdin=video(namespace, "v", account="ghost"), check=False)
    assert f"VideoAnalyzerAccount ghost does not exist in namespace {namespace}" in nowhere.stderr
    tenant.make_vault(admin, namespace, "vault", keys_namespace=keys_namespace)
    tenant.make_key(admin, namespace, "key", vault="vault", key_name="absent")
    tenant.grant(
        admin, keys_namespace=keys_namespace, identity_namespace=namespace, identity="waiting-identity"
    )
    tenant.account(admin, namespace, "waiting", key="key")
    tenant.wait_condition(admin, namespace, "waiting", "Ready", "False", reason="KeyNotFound")
    locked = kubectl("create", "-f", "-", stdin=video(namespace, "v", account="waiting"), check=False)
    assert "is KeyInaccessible (reason KeyNotFound)" in locked.stderr


def test_key_inaccessible_withholds_content_refuses_changes_and_recovers(
    kubectl: Kubectl, admin: client.ApiClient, namespace: str, keys_namespace: str
) -> None:
    tenant.studio_on_customer_key(admin, namespace, keys_namespace)
    kubectl("create", "-f", "-", stdin=video(namespace, "secret-cam", camera="vault"))
    kubectl("create", "-f", "-", stdin=video(namespace, "doomed"))
    # Read before the revocation: what the key opened for these reads must not outlive the key.
    before = _json(kubectl, "get", "videos", "-n", namespace)["items"]
    assert [item["spec"]["title"] for item in before] == ["Lobby camera", "Lobby camera"]

    client.RbacAuthorizationV1Api(admin).delete_namespaced_role_binding(
        "read-keys-studio-identity", keys_namespace
    )
    tenant.wait_locked(admin, namespace, "studio", reason="AccessDenied")
    dark = _json(kubectl, "get", "video", "secret-cam", "-n", namespace)
    assert "spec" not in dark and "labels" not in dark["metadata"]
    ready = helpers.condition(dark, "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", "AccessDenied")
    assert "Content withheld" in ready["message"]
    listed = _json(kubectl, "get", "videos", "-n", namespace)["items"]
    assert {item["metadata"]["name"] for item in listed} == {"secret-cam", "doomed"}
    assert all("spec" not in item for item in listed)
    refused = kubectl(
        "-n",
        namespace,
        "patch",
        "video",
        "secret-cam",
        "--type=merge",
        "-p",
        '{"spec":{"title":"x"}}',
        check=False,
    )
    assert "is KeyInaccessible (reason AccessDenied)" in refused.stderr
    created = kubectl("create", "-f", "-", stdin=video(namespace, "new-cam"), check=False)
    assert "is KeyInaccessible (reason AccessDenied)" in created.stderr
    kubectl("-n", namespace, "delete", "video", "doomed")  # DELETE always works

    tenant.grant(
        admin, keys_namespace=keys_namespace, identity_namespace=namespace, identity="studio-identity"
    )
    tenant.wait_condition(admin, namespace, "studio", "Ready", "True", timeout=WITHIN_ONE_INTERVAL)
    back = helpers.eventually(
        lambda: (
            obj if "spec" in (obj := _json(kubectl, "get", "video", "secret-cam", "-n", namespace)) else None
        )
    )
    assert back["spec"]["title"] == "Lobby camera" and back["metadata"]["labels"] == {"camera": "vault"}
    assert kubectl("get", "video", "doomed", "-n", namespace, check=False).returncode != 0


def test_only_ciphertext_reaches_storage_and_etcd(
    kubectl: Kubectl, admin: client.ApiClient, namespace: str, control_plane: cluster.ControlPlane
) -> None:
    _active_account(admin, namespace)
    marker = "Tangerine-Lobby-7f3a"
    kubectl("apply", "-f", "-", stdin=video(namespace, "plain", title=marker, secret="label-7f3a"))
    sealed = client.CustomObjectsApi(admin).list_namespaced_custom_object(
        "internal.videoanalyzer.io", "v1alpha1", namespace, "sealedobjects"
    )["items"]
    assert len(sealed) == 1
    stored = json.dumps(sealed)
    for needle in (marker, "label-7f3a", "last-applied-configuration", "Front door"):
        assert needle not in stored
    assert control_plane.bins is not None
    etcd = subprocess.run(
        [
            str(control_plane.bins.etcdctl),
            f"--endpoints={control_plane.etcd_url}",
            "get",
            "--prefix",
            "/registry/",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert marker.encode() not in etcd and b"label-7f3a" not in etcd
    assert sealed[0]["metadata"]["ownerReferences"][0]["kind"] == "VideoAnalyzerAccount"


def test_deleting_the_account_deletes_its_data(
    kubectl: Kubectl, admin: client.ApiClient, namespace: str
) -> None:
    _active_account(admin, namespace)
    kubectl("create", "-f", "-", stdin=video(namespace, "short-lived"))
    kubectl("-n", namespace, "delete", "vaa", "studio")

    def gone() -> bool:
        return not client.CustomObjectsApi(admin).list_namespaced_custom_object(
            "internal.videoanalyzer.io", "v1alpha1", namespace, "sealedobjects"
        )["items"]

    helpers.eventually(gone, timeout=60)
    assert kubectl("get", "videos", "-n", namespace, "-o", "name").stdout.strip() == ""


def test_tenants_act_through_rbac_only(kubectl: Kubectl, admin: client.ApiClient, namespace: str) -> None:
    _active_account(admin, namespace)
    kubectl("create", "-f", "-", stdin=video(namespace, "shared"))
    rbac = client.RbacAuthorizationV1Api(admin)
    for user, role in (
        ("viewer-alice", "video-analyzer-data-viewer"),
        ("editor-bob", "video-analyzer-data-editor"),
    ):
        rbac.create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name=user),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role
                ),
                subjects=[
                    client.RbacV1Subject(kind="User", name=user, api_group="rbac.authorization.k8s.io")
                ],
            ),
        )
    time.sleep(1)
    as_viewer, as_editor, as_stranger = "--as=viewer-alice", "--as=editor-bob", "--as=mallory"
    assert kubectl("get", "video", "shared", "-n", namespace, as_viewer, "-o", "name").stdout.strip()
    denied = kubectl("delete", "video", "shared", "-n", namespace, as_viewer, check=False)
    assert denied.returncode != 0 and 'User "viewer-alice" cannot delete' in denied.stderr
    kubectl("create", "-f", "-", as_editor, stdin=video(namespace, "bobs"))
    stranger = kubectl("get", "videos", "-n", namespace, as_stranger, check=False)
    assert stranger.returncode != 0 and "forbidden" in stranger.stderr
    internal = kubectl("get", "sealedobjects", "-n", namespace, as_editor, check=False)
    assert internal.returncode != 0 and "forbidden" in internal.stderr


def test_only_the_front_proxy_is_served(
    operator: OperatorProcess, control_plane: cluster.ControlPlane
) -> None:
    """Someone calling the operator's port directly, claiming a user in the headers, gets nothing."""
    url = f"https://127.0.0.1:{operator.identity.data_api_port}/apis/{GROUP}/{VERSION}/videos"
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(
        url, headers={"X-Remote-User": "system:admin", "X-Remote-Group": "system:masters"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, context=context, timeout=10)
    assert refused.value.code == 401
    assert "front proxy" in json.loads(refused.value.read())["message"]
    assert control_plane.admin is not None  # a client certificate of another CA: refused in the handshake
    context.load_cert_chain(*_write_pair(control_plane))
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
        urllib.request.urlopen(request, context=context, timeout=10)


def _write_pair(control_plane: cluster.ControlPlane) -> tuple[str, str]:
    assert control_plane.workdir is not None and control_plane.admin is not None
    cert, key = control_plane.workdir / "stranger.crt", control_plane.workdir / "stranger.key"
    cert.write_bytes(control_plane.admin.cert_pem)
    key.write_bytes(control_plane.admin.key_pem)
    return str(cert), str(key)


def _sealed(admin: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.CustomObjectsApi(admin).list_namespaced_custom_object(
        "internal.videoanalyzer.io", "v1alpha1", namespace, "sealedobjects"
    )["items"]
    return items


def test_a_sealed_object_copied_to_another_name_or_account_does_not_open(
    kubectl: Kubectl, admin: client.ApiClient, namespace: str
) -> None:
    """An admin may not write the storage at all (the webhook lets only the operator); someone who can
    act as the operator moves ciphertext around: it never opens."""
    _active_account(admin, namespace, "studio")
    _active_account(admin, namespace, "other")
    kubectl("create", "-f", "-", stdin=video(namespace, "original"))
    kubectl("create", "-f", "-", stdin=video(namespace, "decoy", account="other", title="Decoy"))
    by_name = {s["spec"]["name"]: s for s in _sealed(admin, namespace)}
    original, decoy = by_name["original"], by_name["decoy"]
    # the original's ciphertext under the decoy's name, and under the other account
    moved = dict(
        decoy, spec={**decoy["spec"], **{k: original["spec"][k] for k in ("nonce", "ciphertext", "format")}}
    )

    def replace(api: client.ApiClient) -> None:
        client.CustomObjectsApi(api).replace_namespaced_custom_object(
            "internal.videoanalyzer.io",
            "v1alpha1",
            namespace,
            "sealedobjects",
            decoy["metadata"]["name"],
            moved,
        )

    with pytest.raises(client.ApiException) as refused:
        replace(admin)
    assert refused.value.status == 403
    assert "only the video-analyzer operator writes them" in str(refused.value.body)
    with legacy.as_operator(admin) as as_operator:
        replace(as_operator)
    copied = _json(kubectl, "get", "video", "decoy", "-n", namespace)
    assert "spec" not in copied
    assert helpers.condition(copied, "Ready")["reason"] == "UnsealFailed"  # type: ignore[index]
    assert "does not open" in helpers.condition(copied, "Ready")["message"]  # type: ignore[index]
    assert _json(kubectl, "get", "video", "original", "-n", namespace)["spec"]["title"] == "Lobby camera"


def test_rotating_the_customer_key_keeps_every_object_readable(
    kubectl: Kubectl, admin: client.ApiClient, namespace: str, keys_namespace: str
) -> None:
    tenant.studio_on_customer_key(admin, namespace, keys_namespace)
    for i in range(3):
        kubectl("create", "-f", "-", stdin=video(namespace, f"r{i}", title=f"Before {i}"))
    tenant.put_key_version(admin, keys_namespace, "kek", 2, tenant.rsa_pem(2048))
    tenant.wait_wrapped_by(admin, namespace, "studio", keyVersion="2", timeout=WITHIN_ONE_INTERVAL)
    time.sleep(1)
    titles = [item["spec"]["title"] for item in _json(kubectl, "get", "videos", "-n", namespace)["items"]]
    assert sorted(titles) == ["Before 0", "Before 1", "Before 2"]
    kubectl("create", "-f", "-", stdin=video(namespace, "after", title="After"))
    assert _json(kubectl, "get", "video", "after", "-n", namespace)["spec"]["title"] == "After"


def test_an_operator_killed_mid_write_loses_nothing(
    admin: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    """Creates race SIGKILLs of the operator: every create that was answered 201 reads back whole;
    one that failed is absent or whole; nothing is half-written."""
    _active_account(admin, namespace)
    custom = client.CustomObjectsApi(admin)
    created, failed = [], []
    for i in range(30):
        body = yaml.safe_load(video(namespace, f"k{i}", title=f"Kept {i}"))
        if i % 10 == 5:
            operator.kill()
            operator.start()  # returns once the data API is served again
        try:
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "videos", body)
            created.append(f"k{i}")
        except client.ApiException:
            failed.append(f"k{i}")
    assert len(created) >= 25
    items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "videos")["items"]
    by_name = {item["metadata"]["name"]: item for item in items}
    for name in created:
        assert by_name[name]["spec"]["title"] == f"Kept {name[1:]}"
    # A failed create (the operator killed under it) is absent, or whole if it was stored before the
    # answer was lost: never half-written.
    for name in failed:
        assert name not in by_name or by_name[name]["spec"]["title"] == f"Kept {name[1:]}", name
    assert set(by_name) == set(created) | (set(failed) & set(by_name))
    assert all("spec" in item for item in items)  # every stored object opens


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    spec=st.dictionaries(
        st.sampled_from(["accountName", "title", "description", "archival", "colour", "role"]),
        st.one_of(
            st.none(),
            st.text(max_size=40),
            st.integers(),
            st.lists(st.text(max_size=5), max_size=3),
            st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=2),
        ),
        max_size=6,
    )
)
def test_fuzzed_objects_get_4xx_or_are_stored_never_a_server_error(
    admin: client.ApiClient, fuzz_namespace: str, spec: dict[str, Any]
) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Video",
        "metadata": {"generateName": "fuzz-"},
        "spec": spec,
    }
    try:
        client.CustomObjectsApi(admin).create_namespaced_custom_object(
            GROUP, VERSION, fuzz_namespace, "videos", body
        )
    except client.ApiException as error:
        assert 400 <= error.status < 500, error.body
        status = json.loads(error.body)
        assert status["kind"] == "Status" and status["message"]


@pytest.fixture(scope="module")
def fuzz_namespace(admin: client.ApiClient) -> Any:
    name = f"fuzz-{int(time.time())}"
    client.CoreV1Api(admin).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    tenant.account(admin, name, "studio")
    tenant.wait_condition(admin, name, "studio", "Ready", "True")
    yield name
    client.CoreV1Api(admin).delete_namespace(name)


def test_oversize_and_malformed_requests_get_status_answers(
    kubectl: Kubectl, admin: client.ApiClient, namespace: str
) -> None:
    _active_account(admin, namespace)
    huge = yaml.safe_load(video(namespace, "huge"))
    huge["metadata"]["annotations"] = {"blob": "x" * (3 * 1024 * 1024 + 10)}
    too_big = kubectl("create", "-f", "-", stdin=json.dumps(huge), check=False)
    assert too_big.returncode != 0 and (
        "too large" in too_big.stderr.lower() or "larger than" in too_big.stderr
    )
    kubectl("create", "-f", "-", stdin=video(namespace, "target"))
    bad_patch = kubectl(
        "-n",
        namespace,
        "patch",
        "video",
        "target",
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/spec/nope"}]',
        check=False,
    )
    assert bad_patch.returncode != 0 and "non-existent object 'nope'" in bad_patch.stderr
    assert (
        _json(kubectl, "get", "video", "target", "-n", namespace)["metadata"]["generation"] == 1
    )  # nothing half-written


def test_the_example_applies_and_a_re_apply_writes_nothing(
    kubectl: Kubectl, admin: client.ApiClient, namespace: str
) -> None:
    _active_account(admin, namespace)
    documents = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    for document in documents:
        document["metadata"]["namespace"] = namespace
    manifest = json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": documents}
    )  # JSON: no YAML 1.1 booleans
    kubectl(
        "apply", "--server-side", "--validate=strict", "--field-manager=gitops", "-f", "-", stdin=manifest
    )
    before = {
        d["metadata"]["name"]: _json(kubectl, "get", d["kind"], d["metadata"]["name"], "-n", namespace)
        for d in documents
    }
    kubectl("apply", "--server-side", "--field-manager=gitops", "-f", "-", stdin=manifest)
    for name, obj in before.items():
        after = _json(kubectl, "get", obj["kind"], name, "-n", namespace)
        assert after["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
    diff = kubectl("diff", "--server-side", "--field-manager=gitops", "-f", "-", stdin=manifest, check=False)
    assert diff.returncode == 0, diff.stdout + diff.stderr
