"""Re-wrap N accounts after a key rotation, beside the floor measured in the same run.

Floor: the bare RSA operations with cryptography (N unwraps + N wraps, RSA-OAEP-SHA256, same key
size, one thread: the operator runs RSA in a thread pool but the GIL-free part is small on 2 cores)
plus N bare Secret updates against the same apiserver (8 writers).

    .venv/bin/python bench/rotation.py --accounts 1000
"""

from __future__ import annotations

import argparse
import base64
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys
from kubernetes import client

from bench import harness
from vaop.crypto import envelope, rsa
from vaop.providers import kubernetes as kubernetes_provider


def _pem(bits: int) -> bytes:
    key = rsa_keys.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _put_version(core: client.CoreV1Api, ns: str, version: int, pem: bytes) -> None:
    core.create_namespaced_secret(
        ns,
        client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=f"kek-v{version}",
                labels={
                    kubernetes_provider.LABEL_KEY_NAME: "kek",
                    kubernetes_provider.LABEL_KEY_VERSION: str(version),
                },
            ),
            data={kubernetes_provider.DATA_KEY: base64.b64encode(pem).decode()},
        ),
    )


def rsa_floor(count: int, bits: int) -> float:
    private = rsa_keys.generate_private_key(public_exponent=65537, key_size=bits)
    wrapped = [rsa.wrap(private.public_key(), envelope.new_account_key()) for _ in range(count)]
    started = time.perf_counter()
    for item in wrapped:
        rsa.wrap(private.public_key(), rsa.unwrap(private, item, algorithm=rsa.RSA_OAEP_256))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--bits", type=int, default=2048, choices=(2048, 3072, 4096))
    args = parser.parse_args()
    count = args.accounts
    with harness.scratch() as workdir, harness.environment_running(workdir) as (_, api, _operator):
        core = client.CoreV1Api(api)
        api_floor = harness.raw_secret_writes(api, harness.namespace(api, "floor"), count) / 2
        ns = harness.namespace(api, "rot")
        vault = {
            "region": "westeurope",
            "provider": {"kubernetes": {"softDelete": True, "purgeProtection": True}},
        }
        harness.customer_key_setup(api, ns, vault, "kek")
        core.create_namespaced_service_account(
            ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="tenant"))
        )
        rbac = client.RbacAuthorizationV1Api(api)
        rbac.create_namespaced_role(
            ns,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="keys"),
                rules=[client.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=["get", "list"])],
            ),
        )
        rbac.create_namespaced_role_binding(
            ns,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="keys"),
                role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="keys"),
                subjects=[client.RbacV1Subject(kind="ServiceAccount", name="tenant", namespace=ns)],
            ),
        )
        _put_version(core, ns, 1, _pem(args.bits))

        def on(version: str) -> bool:
            return harness.all_wrapped_by(api, ns, count, version)

        def provision() -> None:
            harness.create_customer_key_accounts(api, ns, count, identity="tenant")
            harness.wait_until(lambda: on("1"), timeout=3600)

        def rotate() -> None:
            _put_version(core, ns, 2, _pem(args.bits))
            harness.wait_until(lambda: on("2"), timeout=3600)

        provisioning = harness.timed(provision)
        rotation = harness.timed(rotate)
    crypto_floor = rsa_floor(count, args.bits)
    floor = crypto_floor + api_floor
    print(f"accounts: {count}, customer key RSA-{args.bits}, one (identity, key) pair")
    print(f"provisioning (create to all wrapped by v1): {provisioning:.1f} s")
    print(
        f"rotation (v2 appears to all re-wrapped):     {rotation:.1f} s  ({count / rotation:.1f} accounts/s)"
    )
    print(f"floor: bare RSA unwrap+wrap x{count}: {crypto_floor:.1f} s")
    print(f"floor: bare Secret updates x{count}: {api_floor:.1f} s")
    print(f"ratio of rotation to floor: {rotation / floor:.1f}x")


if __name__ == "__main__":
    main()
