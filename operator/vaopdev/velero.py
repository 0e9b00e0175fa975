"""Velero on the kind tier, offline: the backup tool users run beside the operator.

Everything comes from Go modules pinned under tools/ and built once into the cache: Velero (server
and CLI), its S3 plugin (velero-plugin-for-aws) and versitygw, an S3-compatible object store with a
POSIX back end. versitygw runs on this host, on the kind network's bridge address (a network this
run made; nothing leaves the machine), so every kind cluster of the run reaches the same bucket:
a backup made in one cluster restores into another. Its objects are plain files in a folder, so a
test can read what a backup holds. The Velero and plugin images are written straight from the
binaries (``ociarchive``) under the names Velero's own docs use, and loaded into the node.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import binaries, kindcluster, ociarchive, podman

NAMESPACE = "velero"
BUCKET = "velero"
ACCESS_KEY = "vaop-velero"
SECRET_KEY = "vaop-velero-secret"  # noqa: S105 (a throwaway credential of a store on this host's bridge)


def server_image() -> str:
    return f"docker.io/velero/velero:{binaries.VELERO.version()}"


def plugin_image() -> str:
    return f"docker.io/velero/velero-plugin-for-aws:{binaries.VELERO_PLUGIN_AWS.version()}"


def image_archives() -> list[Path]:
    """docker-archive tarballs of Velero's server and its S3 plugin, made once per version."""
    velero, plugin = binaries.VELERO.ensure(), binaries.VELERO_PLUGIN_AWS.ensure()
    folder = (
        binaries.cache_dir()
        / f"velero-images-{binaries.VELERO.version()}-{binaries.VELERO_PLUGIN_AWS.version()}"
    )
    server = ociarchive.FilesImage(
        server_image(),
        {"/velero": velero / "velero"},
        entrypoint=["/velero"],
        empty={"/tmp": 0o1777, "/scratch": 0o1777},  # noqa: S108 (folders inside the image)
    )
    copier = ociarchive.FilesImage(
        plugin_image(),
        {
            "/plugins/velero-plugin-for-aws": plugin / "velero-plugin-for-aws",
            "/bin/cp-plugin": plugin / "cp-plugin",
        },
        entrypoint=["/bin/cp-plugin", "/plugins/velero-plugin-for-aws", "/target/velero-plugin-for-aws"],
        user="65532:65532",
    )
    return ociarchive.archives(folder, {"velero.tar": server, "plugin.tar": copier})


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class ObjectStore:
    """versitygw on the kind network's bridge, serving one bucket from a folder of this host."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="vaop-s3-"))
        self.host = podman.GATEWAY
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def bucket(self) -> Path:
        return self.folder / BUCKET

    def start(self) -> ObjectStore:
        self.bucket().mkdir(parents=True, exist_ok=True)  # the POSIX back end: a folder is a bucket
        self.port = _free_port(self.host)
        command = [
            str(binaries.VERSITYGW.ensure() / "versitygw"),
            "--access", ACCESS_KEY, "--secret", SECRET_KEY,
            "--port", f"{self.host}:{self.port}",
            "--quiet",
            "posix", str(self.folder),
        ]  # fmt: skip
        log = (self.folder.parent / f"{self.folder.name}.log").open("wb")
        self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return self
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"versitygw did not start; see {log.name}") from None
                time.sleep(0.2)

    def backup_tarball(self, backup: str) -> Path:
        """The tarball of a backup, as Velero wrote it into the bucket."""
        return self.bucket() / "backups" / backup / f"{backup}.tar.gz"

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass(frozen=True)
class Velero:
    """Velero installed in one kind cluster, backing up to the object store."""

    cluster: kindcluster.Cluster

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        command = [
            str(binaries.VELERO.ensure() / "velero"),
            "--kubeconfig",
            str(self.cluster.kubeconfig),
            *args,
        ]
        result = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=timeout, env=_env()
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"velero {' '.join(args)} failed: {result.stdout[-2000:]}{result.stderr[-2000:]}"
            )
        return result


def _env() -> dict[str, str]:
    return dict(os.environ, HOME=str(kindcluster.dev_dir()))  # the CLI keeps its config in ~/.config/velero


def install(cluster: kindcluster.Cluster, store: ObjectStore) -> Velero:
    """``velero install`` with the S3 plugin, backing up to ``store``, as its docs describe for MinIO."""
    for archive in image_archives():
        cluster.load_archive(archive)
    credentials = kindcluster.dev_dir() / f"velero-credentials-{cluster.name}"
    credentials.parent.mkdir(parents=True, exist_ok=True)
    credentials.write_text(f"[default]\naws_access_key_id={ACCESS_KEY}\naws_secret_access_key={SECRET_KEY}\n")
    velero = Velero(cluster)
    velero(
        "install",
        "--provider", "aws",
        "--image", server_image(),
        "--plugins", plugin_image(),
        "--bucket", BUCKET,
        "--secret-file", str(credentials),
        "--backup-location-config", f"region=us-east-1,s3ForcePathStyle=true,s3Url={store.url}",
        "--use-volume-snapshots=false",
        "--wait",
        timeout=600,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while "Available" not in (locations := velero("backup-location", "get", check=False).stdout):
        if time.monotonic() > deadline:
            raise RuntimeError(f"Velero's backup location never became Available: {locations}")
        time.sleep(2)
    return velero
