"""cert-manager on the kind tier, offline: what the chart's ``webhook.certManager`` mode relies on.

Its controller, cainjector and webhook are built from cert-manager's Go module (``tools/cert-manager``),
each written as a one-binary image (``ociarchive``) under the name the upstream chart uses, and
loaded into the node. The upstream Helm chart, from the same module, is installed as users install
it (CRDs included, the start-up API check left out: it is a Job that only waits for the webhook).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import binaries, kindcluster, ociarchive

NAMESPACE = "cert-manager"
RELEASE = "cert-manager"
COMPONENTS = ("controller", "cainjector", "webhook")


def image(component: str) -> str:
    return f"quay.io/jetstack/cert-manager-{component}:{binaries.CERT_MANAGER.version()}"


def image_archives() -> list[Path]:
    """A docker-archive tarball per component, made once per version."""
    built = binaries.CERT_MANAGER.ensure()
    folder = binaries.cache_dir() / f"cert-manager-images-{binaries.CERT_MANAGER.version()}"
    # The upstream images run as an unprivileged numeric user, which runAsNonRoot checks.
    images = {
        f"{component}.tar": ociarchive.FilesImage(
            image(component),
            {f"/app/cmd/{component}/{component}": built / component},
            entrypoint=[f"/app/cmd/{component}/{component}"],
            user="1000:1000",
        )
        for component in COMPONENTS
    }
    return ociarchive.archives(folder, images)


def chart_dir() -> Path:
    """The upstream chart, as the module ships it."""
    return binaries.CERT_MANAGER.source() / "deploy" / "charts" / "cert-manager"


@dataclass(frozen=True)
class CertManager:
    cluster: kindcluster.Cluster

    def renew(self, namespace: str, certificate: str) -> None:
        """What ``cmctl renew`` does: the Issuing condition, which the controller acts on at once."""
        patch = {
            "status": {
                "conditions": [
                    {
                        "type": "Issuing",
                        "status": "True",
                        "reason": "ManuallyTriggered",
                        "message": "Certificate re-issuance manually triggered",
                    }
                ]
            }
        }
        self.cluster.kubectl(
            "-n",
            namespace,
            "patch",
            "certificate",
            certificate,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(patch),
        )

    def certificate(self, namespace: str, name: str) -> dict[str, Any]:
        found = self.cluster.kubectl("-n", namespace, "get", "certificate", name, "-o", "json").stdout
        return dict(json.loads(found))

    def uninstall(self) -> None:
        self.cluster.helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", check=False)


def install(cluster: kindcluster.Cluster) -> CertManager:
    """The upstream chart at the built version, every component rolled out."""
    for archive in image_archives():
        cluster.load_archive(archive)
    version = binaries.CERT_MANAGER.version()
    values = {f"{prefix}image.tag": version for prefix in ("", "cainjector.", "webhook.")}
    values.update({"crds.enabled": "true", "startupapicheck.enabled": "false"})
    settings = [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]
    cluster.helm(
        "upgrade",
        "--install",
        RELEASE,
        str(chart_dir()),
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "--wait",
        "--timeout",
        "5m",
        *settings,
    )
    return CertManager(cluster)
