"""The platform keys' root in a real OpenBao: the system key is a transit key the operator uses as its
own ServiceAccount (Kubernetes auth), the infrastructure key is stored only wrapped by it, a new
transit version re-wraps it, and a root that does not answer is a clear RootUnavailable.

(The move from Secrets into an HSM, with the operator itself, is in test_platform_keys.py.)"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import uuid
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes_asyncio import client as aclient

from vaop import config, platformkeys, platformroot
from vaopdev import cluster, environment, openbao


def _operator_token(admin: client.ApiClient, path: Path) -> Path:
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
    token = client.CoreV1Api(admin).create_namespaced_service_account_token(
        environment.OPERATOR_SERVICE_ACCOUNT, environment.OPERATOR_NAMESPACE, request
    )
    path.write_text(token.status.token)
    return path


def _root(
    bao: openbao.OpenBao, key: str, token_file: Path, *, address: str | None = None
) -> platformroot.Root:
    options = config.OperatorConfig(
        namespace=environment.OPERATOR_NAMESPACE,
        platform_keys_provider="openbao",
        platform_key_name=key,
        platform_openbao_address=address or bao.address,
        platform_openbao_role=f"{key}-role",
        platform_openbao_token_file=str(token_file),
    )
    return platformroot.from_config(options, api=None)  # openbao needs no API


def _stored(admin: client.ApiClient, namespace: str) -> dict[str, bytes]:
    secret = client.CoreV1Api(admin).read_namespaced_secret(platformkeys.INFRASTRUCTURE_SECRET, namespace)
    return {v: base64.b64decode(data) for v, data in secret.data.items()}


async def test_an_openbao_root_wraps_the_infrastructure_key_and_follows_the_transit_keys_versions(
    admin: client.ApiClient,
    api: aclient.ApiClient,
    bao_server: openbao.OpenBao,
    namespace: str,
    tmp_path: Path,
) -> None:
    key = f"platform-{uuid.uuid4().hex[:6]}"
    bao_server.api("POST", f"transit/keys/{key}", {"type": "rsa-3072"})
    bao_server.grant(policy=key, key=key)
    bao_server.role(
        name=f"{key}-role",
        namespace=environment.OPERATOR_NAMESPACE,
        service_account=environment.OPERATOR_SERVICE_ACCOUNT,
        policy=key,
    )
    root = _root(bao_server, key, _operator_token(admin, tmp_path / "token"))

    # Where the kubernetes root kept the infrastructure key in the clear: two versions.
    clear = {"1": os.urandom(32), "2": os.urandom(32)}
    client.CoreV1Api(admin).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=platformkeys.INFRASTRUCTURE_SECRET,
                annotations={platformkeys.ANNOTATION_CURRENT: "2"},
            ),
            data={v: base64.b64encode(k).decode() for v, k in clear.items()},
        ),
    )
    await platformkeys.seal(api, namespace, root)
    stored = _stored(admin, namespace)
    assert set(stored) == {"1", "2", "3"}  # a fresh version, never seen in the clear, made current
    for value in stored.values():
        record = json.loads(value)
        assert (record["root"], record["key"], record["version"]) == ("openbao", key, "1")
        assert all(k not in value and base64.b64encode(k) not in value for k in clear.values())
    keys = await platformkeys.load(api, namespace, root)
    assert keys.infrastructure_version == "3" and keys.system_version == "1"
    assert {v: keys.infrastructure[v] for v in clear} == clear
    assert keys.former is not None and keys.former.kind == platformroot.KUBERNETES

    # A new transit version (auto_rotate_period, or by hand): the next seal re-wraps onto it.
    bao_server.api("POST", f"transit/keys/{key}/rotate", {})
    await asyncio.sleep(2.5)  # a key's metadata is shared for 2 s (the leader looks every interval)
    await platformkeys.seal(api, namespace, root)
    assert {json.loads(v)["version"] for v in _stored(admin, namespace).values()} == {"2"}
    again = await platformkeys.load(api, namespace, root)
    assert again.system_version == "2" and again.infrastructure == keys.infrastructure

    # The operator's policy taken away: not a crash, a clear message saying where.
    bao_server.api(
        "PUT", f"sys/policies/acl/{key}", {"policy": 'path "sys/nothing" { capabilities = ["deny"] }'}
    )
    await asyncio.sleep(2.5)  # reads are shared for 2 s
    with pytest.raises(platformroot.RootUnavailable, match=re.escape(f"OpenBao {bao_server.address}")):
        await platformkeys.load_or_create(api, namespace, root)

    # OpenBao away: the same.
    away = _root(bao_server, key, tmp_path / "token", address=f"http://127.0.0.1:{cluster.free_port()}")
    with pytest.raises(platformroot.RootUnavailable, match="cannot be used"):
        await platformkeys.load(api, namespace, away)
    await root.provider.close()
    await away.provider.close()
