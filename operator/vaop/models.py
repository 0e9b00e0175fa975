"""Typed views of the custom resources (videoanalyzer.io/v1alpha1), reading what crds/*.yaml lets through
(tests/unit/test_crd_models.py keeps the two in agreement).

The CRD schema is what the apiserver enforces; these models give the operator typed access to
what it already validated, in the field names users write (camelCase aliases).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "videoanalyzer.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


class _Model(BaseModel):
    # Unknown fields are kept rather than refused: a newer CRD may add fields before the operator knows them.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True)

    @classmethod
    def parse(cls, data: Mapping[str, Any] | None) -> Self:
        return cls.model_validate(dict(data or {}))


class LocalRef(_Model):
    """A reference to an object in the same namespace; there is deliberately no namespace field."""

    name: str


class SecretKeyRef(_Model):
    name: str
    key: str


# ---- KeyVault ---------------------------------------------------------------------------------


class KubernetesVault(_Model):
    namespace: str | None = None
    soft_delete: bool = False
    purge_protection: bool = False


class OpenBaoVault(_Model):
    address: str
    transit_mount: str = "transit"
    auth_mount: str = "kubernetes"
    role: str
    ca_bundle: str | None = None


class Pkcs11Vault(_Model):
    module: str
    token_label: str
    pin_secret_ref: SecretKeyRef


class AzureKeyVault(_Model):
    vault_url: str = Field(alias="vaultURL")
    # Unset: the account identity's azure.workload.identity/tenant-id and /client-id annotations.
    tenant_id: str | None = Field(default=None, alias="tenantID")
    client_id: str | None = Field(default=None, alias="clientID")
    authority_host: str = "https://login.microsoftonline.com"
    ca_bundle: str | None = None


class VaultProvider(_Model):
    kubernetes: KubernetesVault | None = None
    openbao: OpenBaoVault | None = None
    pkcs11: Pkcs11Vault | None = None
    azure_key_vault: AzureKeyVault | None = None

    @property
    def name(self) -> str:
        """The one provider block that is set (the CRD's CEL rule guarantees exactly one)."""
        for field_name in ("kubernetes", "openbao", "pkcs11", "azure_key_vault"):
            if getattr(self, field_name) is not None:
                return to_camel(field_name)
        raise ValueError("no provider block is set")


class KeyVaultSpec(_Model):
    region: str
    provider: VaultProvider


# ---- CustomerKey ------------------------------------------------------------------------------


class Identity(_Model):
    service_account_name: str | None = None


class CustomerKeySpec(_Model):
    vault_ref: LocalRef
    key_name: str
    key_version: str | None = None
    # Checks the key as this ServiceAccount while no account uses it (accounts use their own).
    identity: Identity = Identity()

    @property
    def pinned_version(self) -> str | None:
        """The pinned version, or None when the key tracks its latest version."""
        return self.key_version or None


# ---- VideoAnalyzerAccount ---------------------------------------------------------------------


class EncryptionType(StrEnum):
    SYSTEM_KEY = "SystemKey"
    CUSTOMER_KEY = "CustomerKey"


class Encryption(_Model):
    type: EncryptionType = EncryptionType.SYSTEM_KEY
    key_ref: LocalRef | None = None
    identity: Identity = Identity()


class AccountSpec(_Model):
    region: str
    encryption: Encryption = Encryption()


class AccountState(StrEnum):
    PROVISIONING = "Provisioning"
    ACTIVE = "Active"
    KEY_INACCESSIBLE = "KeyInaccessible"
    ERROR = "Error"


AccountKey = tuple[str, str]  # (namespace, name) of an account


@dataclass(frozen=True)
class AccountRecord:
    """What every replica keeps of an account from its watch (``accountstore``): enough for admission
    (state, reason), for the data API (uid, spec) and for the leader's reconciliations (all of it)
    without asking the API."""

    uid: str
    state: str
    reason: str
    spec: dict[str, Any]
    status: dict[str, Any] = field(default_factory=dict)
    generation: int | None = None
    resource_version: str = ""
    deleting: bool = False
    account_id: str = ""  # its videoanalyzer.io/account-id annotation ("" until the operator sets it)
    replace_key: str = ""  # its videoanalyzer.io/replace-account-key annotation: a person's request


@dataclass(frozen=True)
class CustomerKeyRecord:
    """What every replica keeps of a CustomerKey from its watch (``handlers/indexes``)."""

    spec: CustomerKeySpec
    status: Mapping[str, Any]
    generation: int | None


def identity_name(account_name: str, spec: AccountSpec) -> str:
    """The account's ServiceAccount: the one named in the spec, else ``<account>-identity``."""
    return spec.encryption.identity.service_account_name or f"{account_name}-identity"


def account_key_secret_name(account_name: str) -> str:
    return f"{account_name}-account-key"
