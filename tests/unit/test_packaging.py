"""What `pip install` gets: the wheel built from pyproject.toml, its extras, and the lock the image
installs from."""

from __future__ import annotations

import importlib.abc
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator, Sequence
from email.parser import Parser
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from vaop import config, models, providers
from vaopdev import binaries

PYPROJECT = tomllib.loads((binaries.REPO_ROOT / "pyproject.toml").read_text())
LOCK = binaries.REPO_ROOT / "requirements.lock"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(folder),
            str(binaries.REPO_ROOT),
        ],
        check=True,
    )
    (built,) = folder.glob("*.whl")
    return built


def test_the_wheel_holds_the_product_and_nothing_of_the_tests(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    packages = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert packages == {"vaop"}, packages  # vaopdev (local control planes, kind) is not shipped
    assert "vaop/py.typed" in names
    assert "vaop/providers/pkcs11.py" in names and "vaop/providers/azure.py" in names


def test_the_azure_and_pkcs11_libraries_are_extras_of_the_wheel(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        fields = Parser().parsestr(archive.read(metadata).decode())
    requirements = [Requirement(r) for r in fields.get_all("Requires-Dist") or []]
    by_extra: dict[str, set[str]] = {}
    for requirement in requirements:
        marker = str(requirement.marker or "")
        extra = marker.split("extra ==")[1].strip(" \"'") if "extra ==" in marker else ""
        by_extra.setdefault(extra, set()).add(canonicalize_name(requirement.name))
    assert {"pkcs11", "azure"} <= set(fields.get_all("Provides-Extra") or [])
    assert by_extra["pkcs11"] == {"python-pkcs11"}
    assert by_extra["azure"] == {"azure-keyvault-keys", "azure-identity"}
    assert not by_extra[""] & {"python-pkcs11", "azure-keyvault-keys", "azure-identity"}


def _locked() -> dict[str, tuple[str, int]]:
    """name -> (pinned version, number of hashes) from requirements.lock."""
    pins: dict[str, tuple[str, int]] = {}
    current = ""
    for line in LOCK.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("--hash=sha256:"):
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
        elif stripped and not stripped.startswith(("#", "-")):
            name, version = stripped.rstrip(" \\").split("==")
            current = canonicalize_name(name)
            pins[current] = (version, 0)
    return pins


def test_the_lock_pins_every_image_dependency_with_hashes_within_what_pyproject_allows() -> None:
    project = PYPROJECT["project"]
    wanted = [
        *project["dependencies"],
        *project["optional-dependencies"]["pkcs11"],
        *project["optional-dependencies"]["azure"],
        *PYPROJECT["build-system"]["requires"],
    ]
    pins = _locked()
    for text in wanted:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in requirements.lock: run `make lock`"
        version, _ = pins[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, outside {requirement.specifier}: run `make lock`"
        )
    assert all(hashes >= 1 for _, hashes in pins.values()), "every pin carries its hashes"
    assert "kubernetes" not in pins and "pytest" not in pins  # the test extra stays out of the image


class _Without(importlib.abc.MetaPathFinder):
    """Makes these top-level packages unimportable, as in an installation without them."""

    def __init__(self, *packages: str) -> None:
        self.packages = packages

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> None:
        if fullname.partition(".")[0] in self.packages:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)


@pytest.fixture
def without_extras(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(sys.modules):
        if name.split(".")[0] in ("pkcs11", "azure"):
            monkeypatch.delitem(sys.modules, name)
    sys.meta_path.insert(0, _Without("pkcs11", "azure"))
    yield
    sys.meta_path.pop(0)


@pytest.mark.parametrize(
    ("provider", "extra"),
    [
        (
            {
                "pkcs11": {
                    "module": "/usr/lib/softhsm/libsofthsm2.so",
                    "tokenLabel": "t",
                    "pinSecretRef": {"name": "p", "key": "pin"},
                }
            },
            "pkcs11",
        ),
        ({"azureKeyVault": {"vaultURL": "https://v.vault.azure.net"}}, "azure"),
    ],
)
@pytest.mark.usefixtures("without_extras")
def test_a_vault_whose_extra_is_not_installed_is_refused_with_what_to_install(
    provider: dict[str, object], extra: str
) -> None:
    spec = models.KeyVaultSpec.parse({"region": "westeurope", "provider": provider})
    refused = providers.refusal(spec)
    assert refused is not None and refused.reason == "ProviderUnavailable"
    assert f"pip install 'video-analyzer-operator[{extra}]'" in refused.message


@pytest.mark.usefixtures("without_extras")
def test_a_pkcs11_platform_root_without_its_extra_stops_the_start_with_what_to_install() -> None:
    with pytest.raises(ValueError, match=r"VAOP_PLATFORM_KEYS_PROVIDER=pkcs11: .*\[pkcs11\]"):
        config.OperatorConfig(
            platform_keys_provider="pkcs11",
            platform_pkcs11_module="/usr/lib/softhsm/libsofthsm2.so",
            platform_pkcs11_token_label="platform",
            platform_pkcs11_pin="2468",
        )
