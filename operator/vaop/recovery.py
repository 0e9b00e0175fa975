"""Break glass (``vaop recover``): a backup opened offline, to the plaintext of its accounts' data.

For the day the cluster is gone. It reads a backup as Velero keeps it in the object store (its
``<backup>.tar.gz``, or that tarball unpacked) or as ``kubectl get -o yaml`` wrote it; opens each
account's envelope with the platform's infrastructure key and then with the key that wrapped it:
the platform's system key (from the backup of the operator's namespace, or given separately), a
tenant's kubernetes-provider key (from the backup of its key Secrets, or a PEM file), an OpenBao
transit key (asked to decrypt with a token the tenant gives) or an HSM key (with the token's PIN);
checks each account key against its recorded key-check value; and writes the AccessPolicies and
Videos that its SealedObjects hold as manifests ready for ``kubectl apply``. Nothing is written to
any cluster, no key is printed, and the files are readable by their owner only.

As ``kubeseal --recovery-unseal`` does for sealed-secrets: whoever holds the backup, the platform
keys and the tenant's key can read the tenant's data without the operator.
"""

from __future__ import annotations

import base64
import os
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys

from . import labels, models, platformkeys
from .crypto import envelope, objects
from .crypto import rsa as rsa_wrap
from .dataapi import codec, kinds
from .domain import accounts as account_decisions
from .providers import base
from .providers import kubernetes as kubernetes_provider

_DOCUMENT_SUFFIXES = (".json", ".yaml", ".yml")


class RecoveryError(Exception):
    """The backup cannot be read, or the keys given cannot open it; says which and why."""


# ---- reading a backup ---------------------------------------------------------------------------


def _documents(text: str, where: str) -> Iterator[dict[str, Any]]:
    try:
        for document in yaml.safe_load_all(text):  # JSON is YAML too
            if isinstance(document, dict) and document.get("kind", "").endswith("List"):
                yield from (item for item in document.get("items") or [] if isinstance(item, dict))
            elif isinstance(document, dict) and "kind" in document:
                yield document
    except yaml.YAMLError as error:
        raise RecoveryError(f"{where} is not YAML or JSON: {error}") from None


def read_objects(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every Kubernetes object in ``paths``: a Velero backup tarball, a folder (an unpacked backup, or
    files written by kubectl), or single YAML/JSON files (documents and Lists)."""
    found: list[dict[str, Any]] = []
    for path in paths:
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                if file.is_file() and file.suffix in _DOCUMENT_SUFFIXES:
                    found += _documents(file.read_text(), str(file))
        elif path.name.endswith((".tar.gz", ".tgz")):
            with tarfile.open(path) as archive:
                for member in archive.getmembers():
                    stream = archive.extractfile(member) if member.isfile() else None
                    if stream is not None and member.name.endswith(_DOCUMENT_SUFFIXES):
                        found += _documents(stream.read().decode(), f"{path}:{member.name}")
        elif path.is_file():
            found += _documents(path.read_text(), str(path))
        else:
            raise RecoveryError(f"{path} does not exist")
    return found


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = obj.get("metadata") or {}
    return meta


def _where(obj: dict[str, Any]) -> tuple[str, str]:
    return str(_meta(obj).get("namespace", "")), str(_meta(obj).get("name", ""))


def _secret_data(secret: dict[str, Any]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


@dataclass(frozen=True)
class OfflinePlatformKeys:
    """The platform's keys as a backup of the operator's namespace holds them."""

    infrastructure: dict[str, bytes]  # version -> AES key
    system: dict[str, bytes]  # version -> PEM

    @classmethod
    def found_in(cls, found: list[dict[str, Any]]) -> OfflinePlatformKeys:
        infrastructure: dict[str, bytes] = {}
        system: dict[str, bytes] = {}
        for secret in found:
            if secret.get("kind") != "Secret" or secret.get("type") != labels.PLATFORM_KEY_SECRET_TYPE:
                continue
            secret_labels = _meta(secret).get("labels") or {}
            if _meta(secret).get("name") == platformkeys.INFRASTRUCTURE_SECRET:
                infrastructure.update(_secret_data(secret))
            elif secret_labels.get(kubernetes_provider.LABEL_KEY_NAME) == platformkeys.SYSTEM_KEY_NAME:
                version = str(secret_labels.get(kubernetes_provider.LABEL_KEY_VERSION, ""))
                system[version] = _secret_data(secret)[kubernetes_provider.DATA_KEY]
        if any(len(key) != 32 for key in infrastructure.values()):
            raise RecoveryError(
                "the infrastructure key in this backup is wrapped by an OpenBao or HSM root "
                "(platformKeys.provider): recover by restoring the backup into a cluster whose operator "
                "uses that root (docs/operations.md#platform-keys-outside-etcd)"
            )
        if not infrastructure:
            raise RecoveryError(
                "no platform keys: give the backup of the operator's namespace (or `kubectl get secret "
                "-n <operator namespace> -l videoanalyzer.io/component=platform-key -o yaml`) with "
                "--platform-keys"
            )
        return cls(infrastructure, system)


# ---- opening account keys -----------------------------------------------------------------------


@dataclass
class TenantKeys:
    """What the tenant brings to open its customer keys."""

    pems: dict[tuple[str, str, str], bytes] = field(default_factory=dict)  # (vault, key, version) -> PEM
    openbao_token: str | None = None
    openbao_address: str | None = None  # instead of the KeyVault's (the vault moved, say)
    pkcs11_pin: str | None = None
    pkcs11_module: str | None = None  # instead of the KeyVault's (another path on this machine)


@dataclass(frozen=True)
class Opened:
    namespace: str
    name: str
    account_id: str
    key_check_value: str
    key: bytes = field(repr=False)


class Opener:
    """Opens the account keys of one backup."""

    def __init__(
        self, found: list[dict[str, Any]], platform: OfflinePlatformKeys, tenant: TenantKeys
    ) -> None:
        self._found = found
        self._platform = platform
        self._tenant = tenant
        self._vaults = {
            _where(o): models.KeyVaultSpec.parse(o.get("spec")) for o in found if o.get("kind") == "KeyVault"
        }

    async def open(self, secret: dict[str, Any]) -> Opened:
        namespace, name = _where(secret)
        account = str((_meta(secret).get("labels") or {}).get(labels.ACCOUNT, ""))
        try:
            sealed = account_decisions.envelope_in(secret.get("data"))
        except envelope.EnvelopeError as error:
            raise RecoveryError(
                f"Secret {namespace}/{name} does not hold a valid envelope: {error}"
            ) from None
        if (sealed.account.namespace, sealed.account.name) != (namespace, account):
            raise RecoveryError(
                f"Secret {namespace}/{name} holds the key of "
                f"{sealed.account.namespace}/{sealed.account.name}, not of {namespace}/{account}"
            )
        outer_key = self._platform.infrastructure.get(sealed.outer_key_version)
        if outer_key is None:
            raise RecoveryError(
                f"{namespace}/{account}: infrastructure key version {sealed.outer_key_version} is not among "
                "the platform keys given"
            )
        try:
            inner = envelope.unseal(sealed, account=sealed.account, outer_key=outer_key)
        except envelope.EnvelopeError as error:
            raise RecoveryError(f"{namespace}/{account}: {error}") from None
        key = await self._unwrap(namespace, sealed.inner, inner)
        kcv = envelope.key_check_value(key)
        recorded = (_meta(secret).get("annotations") or {}).get(labels.ANNOTATION_KEY_CHECK_VALUE)
        if recorded and recorded != kcv:
            raise RecoveryError(f"{namespace}/{account}: the opened key does not match its key-check value")
        return Opened(namespace, account, sealed.account.id, kcv, key)

    async def _unwrap(self, namespace: str, inner: envelope.InnerKeyRef, ciphertext: bytes) -> bytes:
        where = f"{namespace}: key {inner.key_name} version {inner.key_version}"
        if inner.type == models.EncryptionType.SYSTEM_KEY.value:
            pem = self._platform.system.get(inner.key_version)
            if pem is None:
                raise RecoveryError(
                    f"system key version {inner.key_version} is not among the platform keys given"
                )
            return _rsa_unwrap(pem, ciphertext, inner.algorithm, where)
        vault = self._vaults.get((namespace, inner.key_vault))
        pem = self._tenant.pems.get((inner.key_vault, inner.key_name, inner.key_version))
        if pem is None and vault is not None and vault.provider.kubernetes is not None:
            pem = self._key_secret(vault.provider.kubernetes.namespace or namespace, inner)
        if pem is not None:
            return _rsa_unwrap(pem, ciphertext, inner.algorithm, where)
        if vault is None or vault.provider.kubernetes is not None:
            held = (
                "is not in the backup" if vault is None else "is a kubernetes vault whose key Secrets are not"
            )
            raise RecoveryError(
                f"{where}: KeyVault {inner.key_vault} {held} in the backup; give the key version as "
                f"--key-pem {inner.key_vault}/{inner.key_name}/{inner.key_version}=<file>"
            )
        provider = self._provider(vault, where)
        try:
            return await provider.unwrap(
                inner.key_name, inner.key_version, ciphertext, algorithm=inner.algorithm
            )
        except base.ProviderError as error:
            raise RecoveryError(f"{where}: {error}") from None
        finally:
            await provider.close()

    def _key_secret(self, keys_namespace: str, inner: envelope.InnerKeyRef) -> bytes | None:
        for secret in self._found:
            secret_labels = _meta(secret).get("labels") or {}
            if (
                secret.get("kind") == "Secret"
                and _meta(secret).get("namespace") == keys_namespace
                and secret_labels.get(kubernetes_provider.LABEL_KEY_NAME) == inner.key_name
                and secret_labels.get(kubernetes_provider.LABEL_KEY_VERSION) == inner.key_version
            ):
                return _secret_data(secret).get(kubernetes_provider.DATA_KEY)
        return None

    def _provider(self, vault: models.KeyVaultSpec, where: str) -> base.KeyProvider:
        bao, hsm = vault.provider.openbao, vault.provider.pkcs11
        if bao is not None:
            if not self._tenant.openbao_token:
                raise RecoveryError(f"{where} is in OpenBao: give a token allowed to decrypt with it")
            from .providers import openbao

            return openbao.OpenBaoKeyProvider(
                address=self._tenant.openbao_address or bao.address,
                transit_mount=bao.transit_mount,
                auth_mount=bao.auth_mount,
                role=bao.role,
                service_account_token="",
                identity="the break-glass token",
                ca_bundle=bao.ca_bundle,
                vault_token=self._tenant.openbao_token,
                addresses=None,  # a person's own tool, run outside the cluster: any address they give
            )
        if hsm is not None:
            if self._tenant.pkcs11_pin is None:
                raise RecoveryError(f"{where} is in an HSM: give the token's PIN")
            from .providers import pkcs11  # loads a native library

            return pkcs11.Pkcs11KeyProvider(
                module=self._tenant.pkcs11_module or hsm.module,
                token_label=hsm.token_label,
                pin=self._tenant.pkcs11_pin,
                identity="the break-glass PIN",
            )
        raise RecoveryError(
            f"{where} is in a {vault.provider.name} vault, which this tool cannot reach offline"
        )


def _rsa_unwrap(pem: bytes, ciphertext: bytes, algorithm: str, where: str) -> bytes:
    try:
        private = rsa_wrap.load_private_key(pem)
        if not isinstance(private, rsa_keys.RSAPrivateKey):
            raise RecoveryError(f"{where}: the key given is not an RSA private key")
        return rsa_wrap.unwrap(private, ciphertext, algorithm=algorithm)
    except rsa_wrap.KeyMaterialError as error:
        raise RecoveryError(f"{where}: {error}") from None


# ---- the data, in plaintext ---------------------------------------------------------------------


def manifest(obj: dict[str, Any]) -> dict[str, Any]:
    """An opened data object as something to apply: identity, labels, annotations and spec."""
    meta = obj["metadata"]
    kept = {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if meta.get(k)}
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": kept, "spec": obj["spec"]}


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    failures: int = 0

    def fail(self, line: str) -> None:
        self.failures += 1
        self.lines.append(f"FAILED {line}")


async def recover(found: list[dict[str, Any]], opener: Opener, out: Path) -> Report:
    """Open every account-key Secret of the backup, then every SealedObject of an opened account;
    write each object to ``out/<namespace>/<plural>/<name>.yaml``."""
    report = Report()
    opened: dict[tuple[str, str], Opened] = {}
    for secret in found:
        component = (_meta(secret).get("labels") or {}).get(labels.COMPONENT)
        if secret.get("kind") != "Secret" or component != labels.ACCOUNT_KEY_COMPONENT:
            continue
        try:
            key = await opener.open(secret)
        except RecoveryError as error:
            report.fail(str(error))
            continue
        opened[(key.namespace, key.name)] = key
        report.lines.append(
            f"{key.namespace}/{key.name}: account ID {key.account_id}, "
            f"key-check value {key.key_check_value}: opened"
        )
    for record in found:
        if record.get("kind") != "SealedObject":
            continue
        namespace, spec = _meta(record).get("namespace", ""), record.get("spec") or {}
        what = f"{spec.get('kind')} {namespace}/{spec.get('name')}"
        account = opened.get((namespace, str(spec.get("accountName"))))
        if account is None:
            report.fail(f"{what}: the key of account {spec.get('accountName')} was not opened")
            continue
        if codec.bound_account_id(record) != account.account_id:
            report.fail(
                f"{what}: sealed for account ID {codec.bound_account_id(record)}, not {account.account_id}"
            )
            continue
        try:
            obj = manifest(codec.open_record(record, account_key=account.key))
        except (objects.SealError, KeyError, ValueError) as error:
            report.fail(f"{what}: {error}")
            continue
        report.written.append(_write(out, obj))
        report.lines.append(f"{what}: written")
    return report


def _write(out: Path, obj: dict[str, Any]) -> Path:
    folder = out
    for part in (str(obj["metadata"]["namespace"]), kinds.BY_KIND[obj["kind"]].plural):
        folder = folder / part
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # plaintext inside: its owner only
    path: Path = folder / f"{obj['metadata']['name']}.yaml"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # plaintext: its owner only
    with os.fdopen(descriptor, "w") as stream:
        yaml.safe_dump(obj, stream, sort_keys=False)
    return path


def parse_pem_arguments(values: Iterable[str]) -> dict[tuple[str, str, str], bytes]:
    """``VAULT/KEY/VERSION=FILE`` arguments, read."""
    pems: dict[tuple[str, str, str], bytes] = {}
    for value in values:
        name, _, file = value.partition("=")
        parts = name.split("/")
        if len(parts) != 3 or not file:  # vault, key, version
            raise RecoveryError(
                f"--key-pem {value!r}: write it as <KeyVault>/<key name>/<version>=<PEM file>"
            )
        pems[(parts[0], parts[1], parts[2])] = Path(file).read_bytes()
    return pems
