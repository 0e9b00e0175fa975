"""Container images written straight to docker-archive tarballs, without a builder or a registry.

The kind node preloads the images kubeadm asks for (kube-apiserver, etcd, CoreDNS, pause, ...).
Here they are made from Go-built binaries (and, for kube-proxy, a Debian root filesystem with
iptables): each image is a few layers, a config and a manifest in the format ``docker save`` writes,
which ``ctr images import`` and ``podman load`` both read.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Image:
    tag: str  # full reference, e.g. registry.k8s.io/kube-apiserver:v1.37.2
    layers: list[Path]  # uncompressed layer tarballs, lowest first
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=lambda: [PATH_ENV])
    user: str = ""


def files_layer(
    path: Path,
    files: dict[str, Path],
    *,
    mode: int = 0o755,
    empty: dict[str, int] | None = None,
    links: dict[str, str] | None = None,
) -> Path:
    """A layer holding ``files`` (image path -> host file), owned by root, with parent folders, the
    ``empty`` folders (image path -> mode), such as a /tmp, and symbolic ``links`` (image path ->
    target), such as the names one multi-call binary answers to."""
    folders: dict[str, int] = {}
    for target in [*files, *(links or {})]:
        parts = target.strip("/").split("/")[:-1]
        folders.update(("/".join(parts[: i + 1]), 0o755) for i in range(len(parts)))
    folders.update((folder.strip("/"), folder_mode) for folder, folder_mode in (empty or {}).items())
    with tarfile.open(path, "w") as layer:
        for folder, folder_mode in sorted(folders.items()):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, folder_mode
            layer.addfile(info)
        for target, source in sorted(files.items()):
            info = layer.gettarinfo(str(source), arcname=target.strip("/"))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode, info.mtime = mode, 0
            with source.open("rb") as data:
                layer.addfile(info, data)
        for link, target in sorted((links or {}).items()):
            info = tarfile.TarInfo(link.strip("/"))
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
            layer.addfile(info)
    return path


@dataclass(frozen=True)
class FilesImage:
    """An image of a few files (Go binaries, mostly) in one layer."""

    tag: str
    files: dict[str, Path]  # image path -> host file
    entrypoint: list[str] = field(default_factory=list)
    user: str = ""
    empty: dict[str, int] | None = None  # folders to make (image path -> mode), such as a /tmp


def archives(folder: Path, images: dict[str, FilesImage]) -> list[Path]:
    """A docker-archive tarball per image (file name in ``folder`` -> image), made once: written
    into a fresh folder that is renamed into place at the end, so an interrupted run leaves no
    half-made archive behind."""
    made = [folder / name for name in images]
    if all(archive.is_file() for archive in made):
        return made
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for name, image in images.items():
        layer = files_layer(partial / "layer.tar", image.files, empty=image.empty)
        write(
            Image(tag=image.tag, layers=[layer], entrypoint=image.entrypoint, user=image.user), partial / name
        )
        layer.unlink()
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return made


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while chunk := data.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write(image: Image, archive: Path) -> Path:
    """Write ``image`` as a docker-archive tarball at ``archive``."""
    diff_ids = [_sha256(layer) for layer in image.layers]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": image.env, "Entrypoint": image.entrypoint or None, "Cmd": image.cmd or None},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in diff_ids]},
        "history": [{"created_by": "vaopdev.ociarchive"} for _ in diff_ids],
    }
    if image.user:
        config["config"]["User"] = image.user  # type: ignore[index]
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [
        {"Config": config_name, "RepoTags": [image.tag], "Layers": [f"{d}/layer.tar" for d in diff_ids]}
    ]
    with tarfile.open(archive, "w") as out:
        _add_bytes(out, config_name, config_bytes)
        for diff_id, layer in zip(diff_ids, image.layers, strict=True):
            out.add(str(layer), arcname=f"{diff_id}/layer.tar")
        _add_bytes(out, "manifest.json", json.dumps(manifest).encode())
    return archive


def _add_bytes(out: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    out.addfile(info, io.BytesIO(data))
