"""``python -m vaopdev``: the local environments (``make up``/``down``, ``make kind``/``kind-down``,
``make image``).

Not part of the operator's image: the operator itself is ``vaop run``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from types import FrameType

from . import binaries, kindcluster


def _up(args: argparse.Namespace) -> int:
    from . import cluster, environment

    dev_dir = kindcluster.dev_dir()
    dev_dir.mkdir(parents=True, exist_ok=True)
    pid_file = dev_dir / "up.pid"
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
        kubeconfig = dev_dir / "kubeconfig"
        kubeconfig.write_bytes(plane.admin_kubeconfig.read_bytes())
        kubeconfig.chmod(0o600)
        print("vaop: installing the chart (CRDs, RBAC, webhook configuration) with helm...", flush=True)
        environment.helm_install(plane)
        identity = environment.operator_identity(plane)
        pid_file.write_text(str(os.getpid()))
        operator = environment.OperatorProcess(identity, None)
        operator.start()
        environment.wait_for_data_api(plane)
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


def _down(args: argparse.Namespace) -> int:
    pid_file = kindcluster.dev_dir() / "up.pid"
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


def _kind(args: argparse.Namespace) -> int:
    started = time.monotonic()
    cluster = kindcluster.up()
    print(
        f"vaop: kind cluster {kindcluster.CLUSTER} is up in {time.monotonic() - started:.0f}s; the operator "
        f"runs as a Deployment in {kindcluster.NAMESPACE} from {cluster.operator_image}\n"
        f"vaop: try: KUBECONFIG={cluster.kubeconfig} kubectl apply -f examples/\n"
        "vaop: `make kind-down` removes the cluster",
        flush=True,
    )
    return 0


def _kind_down(args: argparse.Namespace) -> int:
    kindcluster.down()
    print("vaop: kind cluster, its network and kubeconfig removed (built images stay cached)")
    return 0


def _image(args: argparse.Namespace) -> int:
    from . import image

    reference = image.ensure()
    print(f"{reference} ({image.size_bytes(reference) / 1e6:.0f} MB)")
    return 0


def _binaries(args: argparse.Namespace) -> int:
    for tool in binaries.CONTROL_PLANE_TOOLS + (
        binaries.KIND_TOOLS + binaries.BESIDE_TOOLS if args.kind else ()
    ):
        print(f"{tool.name}: {tool.ensure()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vaopdev", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="local control plane + the operator, in the foreground").set_defaults(
        func=_up
    )
    commands.add_parser("down", help="stop what `up` started").set_defaults(func=_down)
    commands.add_parser("kind", help="kind cluster with the operator installed by helm").set_defaults(
        func=_kind
    )
    commands.add_parser("kind-down", help="delete the kind cluster").set_defaults(func=_kind_down)
    commands.add_parser("image", help="build the operator image with podman").set_defaults(func=_image)
    build = commands.add_parser("binaries", help="build the Go binaries into the cache")
    build.add_argument(
        "--kind",
        action="store_true",
        help="also the kind tier's (node image inputs, and the tools run beside the operator)",
    )
    build.set_defaults(func=_binaries)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
