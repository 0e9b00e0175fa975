"""Command line: ``vaop run`` (the operator) and ``vaop dev up|down`` (the local environment)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from . import config

DEV_DIR = Path(os.environ.get("VAOP_DEV_DIR", Path.cwd() / ".dev"))


def _run_operator(args: argparse.Namespace) -> int:
    import kopf

    from . import handlers  # noqa: F401  (registers the handlers)

    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    settings = config.OperatorConfig()
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The API clients log whole response bodies at DEBUG, and those hold Secrets (tenants' key PEMs,
    # envelopes). Never let them through, whatever level the operator runs at.
    for name in ("kubernetes_asyncio.client.rest", "kubernetes.client.rest"):
        logging.getLogger(name).setLevel(logging.INFO)
    liveness = f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
    kopf.run(clusterwide=True, standalone=True, liveness_endpoint=liveness)
    return 0


def _dev_up(args: argparse.Namespace) -> int:
    from .devcluster import cluster, environment

    DEV_DIR.mkdir(parents=True, exist_ok=True)
    pid_file = DEV_DIR / "up.pid"
    stopping = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    plane = cluster.ControlPlane()
    operator: environment.OperatorProcess | None = None
    try:
        print("vaop: starting etcd, kube-apiserver and kube-controller-manager...", flush=True)
        plane.start()
        assert plane.admin_kubeconfig is not None
        kubeconfig = DEV_DIR / "kubeconfig"
        kubeconfig.write_bytes(plane.admin_kubeconfig.read_bytes())
        kubeconfig.chmod(0o600)
        print("vaop: installing the chart (CRDs, RBAC) with helm...", flush=True)
        environment.helm_install(plane)
        identity = environment.operator_identity(plane)
        pid_file.write_text(str(os.getpid()))
        operator = environment.OperatorProcess(identity, None)
        operator.start()
        print(
            f"vaop: control plane at {plane.server}; admin kubeconfig: {kubeconfig}\n"
            f"vaop: operator runs as system:serviceaccount:{identity.namespace}:{identity.service_account}, "
            f"metrics at {operator.metrics_url}\n"
            f"vaop: try: KUBECONFIG={kubeconfig} kubectl apply -f examples/   (Ctrl-C or `make down` stops)",
            flush=True,
        )
        while not stopping and operator.alive():
            time.sleep(0.5)
        return 0 if stopping else 1
    finally:
        if operator is not None:
            operator.stop()
        plane.stop()
        pid_file.unlink(missing_ok=True)
        print("vaop: stopped; nothing left running.", flush=True)


def _dev_down(args: argparse.Namespace) -> int:
    pid_file = DEV_DIR / "up.pid"
    if not pid_file.exists():
        print("vaop: nothing to stop (no .dev/up.pid)")
        return 0
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        return 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print("vaop: stopped")
            return 0
        time.sleep(0.3)
    print(f"vaop: process {pid} did not stop within 60s", file=sys.stderr)
    return 1


def _keys(args: argparse.Namespace) -> int:
    import asyncio

    from kubernetes_asyncio import client

    from . import keyadmin, kubeclient

    async def run() -> str:
        async with client.ApiClient(await kubeclient.load_configuration()) as api:
            namespace = await keyadmin.key_namespace(api, args.namespace, args.vault)
            if args.keys in {"disable", "enable"}:
                await keyadmin.set_enabled(
                    api, namespace, args.name, args.version, enabled=args.keys == "enable"
                )
                return f"key {args.name} version {args.version} {args.keys}d in namespace {namespace}"
            version = await keyadmin.create_rsa(api, namespace, args.name, size=args.size)
            return f"key {args.name} version {version} (RSA-{args.size}) stored in namespace {namespace}"

    try:
        print(asyncio.run(run()))
    except ValueError as error:
        print(f"vaop: {error}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vaop", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator")
    run.add_argument("--kubeconfig", help="kubeconfig to use (default: in-cluster, then $KUBECONFIG)")
    run.add_argument("--log-level", default="INFO")
    run.set_defaults(func=_run_operator)

    dev = commands.add_parser("dev", help="the local control plane").add_subparsers(dest="dev", required=True)
    dev.add_parser("up", help="start the control plane and the operator in the foreground").set_defaults(
        func=_dev_up
    )
    dev.add_parser("down", help="stop what `dev up` started").set_defaults(func=_dev_down)

    keys = commands.add_parser("keys", help="manage kubernetes-provider key versions (as the tenant)")
    key_commands = keys.add_subparsers(dest="keys", required=True)
    for command, text in [
        ("create", "create a key (its version 1)"),
        ("rotate", "add a new version; accounts tracking the latest are re-wrapped"),
        ("disable", "disable one version"),
        ("enable", "enable one version again"),
    ]:
        sub = key_commands.add_parser(command, help=text)
        sub.add_argument("--namespace", "-n", required=True, help="namespace of the KeyVault")
        sub.add_argument("--vault", required=True, help="KeyVault name")
        sub.add_argument("--name", required=True, help="key name")
        if command in ("create", "rotate"):
            sub.add_argument("--size", type=int, default=3072, choices=(2048, 3072, 4096))
        else:
            sub.add_argument("--version", type=int, required=True)
        sub.set_defaults(func=_keys)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
