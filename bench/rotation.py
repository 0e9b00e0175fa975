"""Re-wrap N accounts after a key rotation, beside the floor measured in the same run.

Floor: the bare RSA operations with cryptography (N unwraps + N wraps, RSA-OAEP-SHA256, same key
size, one thread: the operator runs RSA in a thread pool but the GIL-free part is small on 2 cores)
plus N bare Secret updates against the same apiserver (8 writers). A re-wrap must also record the
new key version in the account's status, so a second floor adds N bare status patches of the same
accounts (the operator stopped first): the writes the job cannot do without.

    .venv/bin/python bench/rotation.py --accounts 1000
"""

from __future__ import annotations

import argparse
import time

from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys

from bench import harness
from vaop.crypto import envelope, rsa


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
    parser.add_argument("--profile", action="store_true", help="sample the operator with py-spy")
    parser.add_argument("--workers", type=int, default=8, help="accounts reconciled at once (VAOP_WORKERS)")
    args = parser.parse_args()
    count = args.accounts
    profile: list[str] = []
    with (
        harness.scratch() as workdir,
        harness.environment_running(workdir, settings={"VAOP_WORKERS": str(args.workers)}) as (
            plane,
            api,
            operator,
        ),
    ):
        api_floor = harness.raw_secret_writes(api, harness.namespace(api, "floor"), count).updates
        ns = harness.namespace(api, "rot")
        harness.kubernetes_key_tenant(api, ns, identity="tenant")
        harness.put_key_version(api, ns, 1, bits=args.bits)

        def provision() -> None:
            harness.create_customer_key_accounts(api, ns, count, identity="tenant")
            harness.watch_until(api, ns, count, harness.wrapped_by("1"))

        def rotate() -> None:
            harness.put_key_version(api, ns, 2, bits=args.bits)
            harness.watch_until(api, ns, count, harness.wrapped_by("2"))

        provisioning = harness.timed(provision)
        since = time.time()
        assert operator.popen is not None
        pids = {**plane.pids(), "operator": operator.popen.pid}
        with (
            harness.profiled(operator.popen.pid, enabled=args.profile) as profile,
            harness.cpu_used(pids) as cpu,
        ):
            rotation = harness.timed(rotate)
        time.sleep(2)  # the last writes' audit entries
        users = {harness.operator_user(), f"system:serviceaccount:{ns}:tenant"}
        requests = harness.request_counts(plane, since=since, users=users)
        operator.stop()
        status_floor = harness.raw_status_patches(api, ns)
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
    print(f"floor: bare account status patches x{count}: {status_floor:.1f} s")
    print(
        "ratio of rotation to the floor of both writes a re-wrap makes: "
        f"{rotation / (floor + status_floor):.1f}x"
    )
    harness.print_requests(
        "apiserver requests during the rotation (operator and tenant identity)", requests, count
    )
    print(
        f"CPU seconds used during the rotation ({rotation:.1f} s on 2 cores): "
        + ", ".join(
            f"{name} {seconds:.1f}" for name, seconds in sorted(cpu.items(), key=lambda item: -item[1])
        )
    )
    if profile:
        print("where the operator spent its time during the rotation (py-spy):")
        print("\n".join(f"  {line}" for line in profile))


if __name__ == "__main__":
    main()
