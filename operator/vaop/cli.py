"""Command line: ``vaop run`` (the operator) and ``vaop keys`` (kubernetes-provider keys, as a tenant).

The local environment (``make up``, ``make kind``) has its own command: ``python -m vaopdev``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from . import config


def _run_operator(args: argparse.Namespace) -> int:
    import kopf

    from . import allocator, handlers, kopfscale  # noqa: F401  (handlers: registers them)

    allocator.keep_large_blocks_apart()  # RSS that stays flat over months of checks
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    settings = config.OperatorConfig()
    log_format = args.log_format or settings.log_format
    kopf.configure(
        debug=args.log_level.upper() == "DEBUG",
        log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.FULL,
        log_prefix=log_format != "json",
    )
    logging.getLogger().setLevel(args.log_level.upper())
    # The API clients log whole response bodies at DEBUG, and those hold Secrets (tenants' key PEMs,
    # envelopes). Never let them through, whatever level the operator runs at.
    for name in ("kubernetes_asyncio.client.rest", "kubernetes.client.rest"):
        logging.getLogger(name).setLevel(logging.INFO)
    # Kopf says "Handler ... succeeded" at INFO for every watch event of every object: four lines
    # per status write, tens of thousands in a rotation. Its warnings and errors still show.
    if args.log_level.upper() != "DEBUG":
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # Liveness and readiness are the operator's own (handlers/setup.py), on the health port; several
    # replicas elect a leader on a Lease, so Kopf's own peering is not used.
    # The pod name, not the OS user (which has no passwd entry in the image). Kopf's Identity is a
    # NewType of str that it does not export.
    kopfscale.apply()  # a restart with tens of thousands of accounts gets ready in seconds, not hours
    kopf.run(clusterwide=True, standalone=True, identity=settings.pod_name)  # type: ignore[arg-type]
    return 0


def _as_administrator(command: str, work: Callable[[Any], Awaitable[str]]) -> int:
    """Run ``work`` with an API client of the user's kubeconfig; print its answer, or its refusal."""
    import asyncio

    from . import kubeclient

    async def run() -> str:
        async with kubeclient.api_client(await kubeclient.load_configuration(), agent="vaop-cli") as api:
            return await work(api)

    try:
        print(asyncio.run(run()))
    except ValueError as error:
        print(f"{command}: {error}", file=sys.stderr)
        return 2
    return 0


def _keys(args: argparse.Namespace) -> int:
    from . import keyadmin

    async def work(api: Any) -> str:
        if args.keys == "list":
            return await keyadmin.listing(api, args.namespace)
        namespace = await keyadmin.key_namespace(api, args.namespace, args.vault)
        if args.keys == "expire":
            expires_on = None if args.on == "never" else args.on
            await keyadmin.set_expiry(api, namespace, args.name, args.version, expires_on=expires_on)
            return f"key {args.name} version {args.version} expires on {args.on} (namespace {namespace})"
        if args.keys in {"disable", "enable"}:
            await keyadmin.set_enabled(api, namespace, args.name, args.version, enabled=args.keys == "enable")
            return f"key {args.name} version {args.version} {args.keys}d in namespace {namespace}"
        version = await keyadmin.create_rsa(api, namespace, args.name, size=args.size)
        return f"key {args.name} version {version} (RSA-{args.size}) stored in namespace {namespace}"

    return _as_administrator("vaop", work)


def _platform(args: argparse.Namespace) -> int:
    from . import platformadmin

    async def work(api: Any) -> str:
        if args.platform == "status":
            return await platformadmin.status(api, args.namespace)
        if args.platform == "rotate":
            return await platformadmin.rotate(api, args.namespace, args.key)
        return await platformadmin.retire(api, args.namespace, args.key, args.version)

    return _as_administrator("vaop platform", work)


def _recover(args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    from . import recovery

    try:
        found = recovery.read_objects(Path(p) for p in args.backup)
        platform = recovery.OfflinePlatformKeys.found_in(
            found + recovery.read_objects(Path(p) for p in args.platform_keys)
        )
        tenant = recovery.TenantKeys(
            pems=recovery.parse_pem_arguments(args.key_pem),
            openbao_token=_secret_from(args.openbao_token_file, "VAOP_RECOVER_OPENBAO_TOKEN"),
            openbao_address=args.openbao_address,
            pkcs11_pin=_secret_from(args.pkcs11_pin_file, "VAOP_RECOVER_PKCS11_PIN"),
            pkcs11_module=args.pkcs11_module,
        )
        report = asyncio.run(
            recovery.recover(found, recovery.Opener(found, platform, tenant), Path(args.out))
        )
    except recovery.RecoveryError as error:
        print(f"vaop recover: {error}", file=sys.stderr)
        return 2
    for line in report.lines:
        print(line)
    print(f"{len(report.written)} objects written under {args.out}; {report.failures} failures")
    return 1 if report.failures else 0


def _secret_from(path: str | None, variable: str) -> str | None:
    """A token or PIN from a file or the environment, never from the command line (ps shows that)."""
    if path:
        with open(path) as stream:
            return stream.read().strip()
    return os.environ.get(variable)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vaop", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator")
    run.add_argument("--kubeconfig", help="kubeconfig to use (default: in-cluster, then $KUBECONFIG)")
    run.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    run.add_argument("--log-format", choices=("text", "json"), help="default: $VAOP_LOG_FORMAT, else text")
    run.set_defaults(func=_run_operator)

    keys = commands.add_parser("keys", help="manage kubernetes-provider key versions (as the tenant)")
    key_commands = keys.add_subparsers(dest="keys", required=True)
    listing = key_commands.add_parser(
        "list", help="every CustomerKey of a namespace (any provider): its version, expiry and readiness"
    )
    listing.add_argument("--namespace", "-n", required=True)
    listing.set_defaults(func=_keys)
    for command, text in [
        ("create", "create a key (its version 1)"),
        ("rotate", "add a new version; accounts tracking the latest are re-wrapped"),
        ("disable", "disable one version"),
        ("enable", "enable one version again"),
        (
            "expire",
            "give one version an expiry date (--on RFC 3339, or never); past it, it wraps nothing new",
        ),
    ]:
        sub = key_commands.add_parser(command, help=text)
        sub.add_argument("--namespace", "-n", required=True, help="namespace of the KeyVault")
        sub.add_argument("--vault", required=True, help="KeyVault name")
        sub.add_argument("--name", required=True, help="key name")
        if command in ("create", "rotate"):
            sub.add_argument("--size", type=int, default=3072, choices=(2048, 3072, 4096))
        else:
            sub.add_argument("--version", type=int, required=True)
        if command == "expire":
            sub.add_argument("--on", required=True, help="e.g. 2027-03-31T00:00:00Z, or never")
        sub.set_defaults(func=_keys)

    platform = commands.add_parser("platform", help="the platform's own keys (as the platform administrator)")
    platform_commands = platform.add_subparsers(dest="platform", required=True)
    for command, text in [
        ("status", "each version of the system and infrastructure keys, and the envelopes using it"),
        ("rotate", "make a new version current; the operator moves every envelope onto it"),
        ("retire", "delete an old version once no envelope uses it"),
    ]:
        sub = platform_commands.add_parser(command, help=text)
        sub.add_argument("--namespace", "-n", default="vaop-system", help="the operator's namespace")
        if command != "status":
            sub.add_argument("key", choices=("system-key", "infrastructure-key"))
        if command == "retire":
            sub.add_argument("--version", required=True)
        sub.set_defaults(func=_platform)

    recover = commands.add_parser(
        "recover",
        help="break glass: open a backup offline and write its AccessPolicies and Videos in plaintext",
        description=(
            "Opens a backup (a Velero backup's .tar.gz, the folder it unpacks to, or kubectl get -o yaml "
            "output) with the platform keys and the tenants' keys, and writes every AccessPolicy and "
            "Video its SealedObjects hold as a manifest under --out (mode 0600). Touches no cluster."
        ),
    )
    recover.add_argument("backup", nargs="+", help="backup tarballs, folders or YAML/JSON files")
    recover.add_argument("--out", required=True, help="folder to write the plaintext manifests to")
    recover.add_argument(
        "--platform-keys",
        action="append",
        default=[],
        help="the platform-key Secrets, when the backup does not hold the operator's namespace",
    )
    recover.add_argument(
        "--key-pem",
        action="append",
        default=[],
        metavar="VAULT/KEY/VERSION=FILE",
        help="a kubernetes-provider key version as a PEM file (when its Secrets are not in the backup)",
    )
    recover.add_argument(
        "--openbao-token-file", help="OpenBao token that may decrypt (or $VAOP_RECOVER_OPENBAO_TOKEN)"
    )
    recover.add_argument("--openbao-address", help="OpenBao's address, if not the KeyVault's any more")
    recover.add_argument("--pkcs11-pin-file", help="the HSM token's user PIN (or $VAOP_RECOVER_PKCS11_PIN)")
    recover.add_argument("--pkcs11-module", help="the PKCS#11 module here, if not the KeyVault's path")
    recover.set_defaults(func=_recover)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
