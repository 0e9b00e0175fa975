"""``make image``: the operator's image, built with podman from the repository's Containerfile.

The Containerfile names its base as any registry user would (python:3.11-slim-bookworm). No
registry answers here, so when podman lacks that image it is made under the same name from
Debian's archive (bookworm's Python 3.11, with venv), labelled as such. The build itself runs with
no network: pip installs from a folder of wheels downloaded from PyPI beforehand on this host and
mounted into the build, passed through the Containerfile's PIP_* build arguments.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tomllib
from pathlib import Path

from . import binaries, podman, rootfs

REPOSITORY = "localhost/vaop/video-analyzer-operator"
PYTHON_IMAGE = "docker.io/library/python:3.11-slim-bookworm"
CONTAINERFILE = binaries.REPO_ROOT / "Containerfile"
PYPROJECT = binaries.REPO_ROOT / "pyproject.toml"
LOCK = binaries.REPO_ROOT / "requirements.lock"


def tag(base_id: str) -> str:
    """The chart's appVersion plus a hash of everything the image is built from, its base included."""
    digest = hashlib.sha256(base_id.encode())
    sources = [
        CONTAINERFILE,
        PYPROJECT,
        LOCK,
        *sorted((binaries.REPO_ROOT / "operator" / "vaop").rglob("*.py")),
    ]
    for path in sources:
        digest.update(str(path.relative_to(binaries.REPO_ROOT)).encode() + b"\0" + path.read_bytes())
    version = tomllib.loads(PYPROJECT.read_text())["project"]["version"]
    return f"{version}-{digest.hexdigest()[:10]}"


def ensure_python_base() -> str:
    """The Containerfile's base, made from Debian's archive unless podman has the real one (or ours,
    from the current root filesystem); returns its image ID."""
    packages = ["python3", "python3-venv", "ca-certificates"]
    if podman.image_exists(PYTHON_IMAGE):
        made_from = (
            podman.run(
                "image", "inspect", "--format", '{{ index .Labels "io.vaop.made-from" }}', PYTHON_IMAGE
            )
            .stdout.decode()
            .strip()
        )
        if made_from in ("", "<no value>", rootfs.path("python", packages).name):  # a registry's, or ours
            return _image_id(PYTHON_IMAGE)
    tarball = rootfs.debian("python", packages)
    podman.import_rootfs(
        tarball,
        PYTHON_IMAGE,
        changes=[
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            'CMD ["python3"]',
            f"LABEL io.vaop.made-from={tarball.name}",
        ],
    )
    return _image_id(PYTHON_IMAGE)


def _image_id(reference: str) -> str:
    return podman.run("image", "inspect", "--format", "{{.Id}}", reference).stdout.decode().strip()


def wheelhouse() -> Path:
    """Wheels of requirements.lock (the runtime dependencies, every extra, the build backend), fetched
    once per lock, each checked against the lock's hashes."""
    key = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:12]
    folder = binaries.cache_dir() / f"wheels-{key}"
    if not (folder / ".complete").is_file():
        print("vaop: downloading the image's Python wheels from PyPI...", file=sys.stderr, flush=True)
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--only-binary=:all:",
                "--dest",
                str(folder),
                "--python-version",
                "3.11",
                "--platform",
                "manylinux_2_36_x86_64",
                "--platform",
                "manylinux2014_x86_64",
                "--platform",
                "linux_x86_64",
                "--require-hashes",
                "--no-deps",
                "--requirement",
                str(LOCK),
            ],
            check=True,
        )
        (folder / ".complete").touch()
    return folder


def ensure() -> str:
    """The operator image for the current sources, built when podman does not have it yet."""
    image = f"{REPOSITORY}:{tag(ensure_python_base())}"
    if podman.image_exists(image):
        return image
    wheels = wheelhouse()
    print(f"vaop: building {image} from {CONTAINERFILE.name}...", file=sys.stderr, flush=True)
    podman.run(
        "build",
        "--network=none",
        "--volume",
        f"{wheels}:/wheels:ro",
        "--build-arg",
        "PIP_NO_INDEX=1",
        "--build-arg",
        "PIP_FIND_LINKS=/wheels",
        "--file",
        str(CONTAINERFILE),
        "--tag",
        image,
        str(binaries.REPO_ROOT),
    )
    podman.remove_other_tags(REPOSITORY, keep=image)
    return image


def size_bytes(image: str) -> int:
    return int(podman.run("image", "inspect", "--format", "{{.Size}}", image).stdout.decode().strip())
