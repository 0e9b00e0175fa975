"""Re-wrap N accounts on an Azure Key Vault key after a new version: the time, and the requests sent.

Runs against the Key Vault stand-in of the tests (no Azure, no emulator here: see
docs/providers/azure-key-vault.md), so the time says little about Azure; the request counts are the
provider's own behaviour and what a vault's throttling limits must allow. Azure has no re-wrap
operation: each account costs one unwrapKey (the wrap uses the version's public key locally).

    .venv/bin/python -m bench.azure_rotation --accounts 200
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from kubernetes import client
from tests.integration import azure_stand_in

from bench import harness
from vaop import models


def _endpoint(method: str, path: str) -> str:
    path = path.partition("?")[0]
    if path.endswith("/token"):
        return "POST token"
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return f"{method} {last if last in ('versions', 'wrapkey', 'unwrapkey') else 'keys/<name>/<version>'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=200)
    args = parser.parse_args()
    count = args.accounts
    with harness.scratch() as workdir, harness.environment_running(workdir) as (_, api, _):
        vault = azure_stand_in.start(api, workdir)
        ns = harness.namespace(api, "akv")
        client.CoreV1Api(api).create_namespaced_service_account(
            ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="tenant"))
        )
        vault.add_version("kek", size=2048)
        client_id = vault.register_app(f"system:serviceaccount:{ns}:tenant")
        vault.assign(client_id, "kek")
        block = {
            "vaultURL": vault.vault_url,
            "tenantID": vault.tenant_id,
            "clientID": client_id,
            "authorityHost": vault.authority,
            "caBundle": vault.ca_pem,
        }
        harness.customer_key_setup(
            api, ns, {"region": "westeurope", "provider": {"azureKeyVault": block}}, "kek"
        )
        first = vault.keys["kek"].versions[0].version

        harness.create_customer_key_accounts(api, ns, count, identity="tenant")
        harness.wait_until(lambda: harness.all_wrapped_by(api, ns, count, first), timeout=1800)
        time.sleep(1)
        before = len(vault.requests)
        custom = client.CustomObjectsApi(api)
        started = time.perf_counter()
        second = vault.add_version("kek", size=2048)

        def detected() -> bool:
            key = custom.get_namespaced_custom_object(models.GROUP, models.VERSION, ns, "customerkeys", "key")
            return bool(key.get("status", {}).get("currentVersion") == second)

        harness.wait_until(detected, timeout=600, interval=0.1)
        detection = time.perf_counter() - started
        harness.wait_until(lambda: harness.all_wrapped_by(api, ns, count, second), timeout=1800)
        rotation = time.perf_counter() - started - detection
        calls = Counter(_endpoint(method, path) for method, path in vault.requests[before:])
        vault.stop()
    print(f"accounts: {count} on one Azure Key Vault key (RSA 2048, stand-in), one identity")
    print(f"detection of the new version (polling: interval 30 s with jitter): {detection:.1f} s")
    print(f"re-wrap after detection, until all on the new version: {rotation:.1f} s")
    print(f"requests the vault received during the rotation: {sum(calls.values())}")
    for endpoint, number in calls.most_common():
        print(f"  {endpoint}: {number}")


if __name__ == "__main__":
    main()
