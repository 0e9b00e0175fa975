"""Operator settings, read once from the environment (``VAOP_*``) at start-up."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from . import sharding
from .providers import addresses, extras


class OperatorConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VAOP_", frozen=True)

    namespace: str = Field(
        default="vaop-system",
        description="The operator's own namespace: platform keys and leader election live here.",
    )
    metrics_port: int = Field(default=8080, description="Prometheus metrics; 0 disables the endpoint.")
    health_port: int = Field(
        default=8081, description="Liveness (/healthz) and readiness (/readyz) endpoints; 0 disables them."
    )
    health_host: str = Field(default="0.0.0.0", description="Address the health endpoints listen on.")  # noqa: S104
    pod_name: str = Field(
        default_factory=socket.gethostname,
        description="This replica's name: its leader-election identity.",
    )
    leader_election: bool = Field(
        default=True, description="Elect one leader among replicas (a Lease); off: this process always leads."
    )
    lease_name: str = Field(
        default="video-analyzer-operator", description="The Lease, in the operator's namespace."
    )
    lease_duration: float = Field(default=15.0, description="Seconds a Lease is held without renewal.")
    renew_deadline: float = Field(
        default=10.0, description="Seconds the leader keeps trying to renew before it stops."
    )
    retry_period: float = Field(default=2.0, description="Seconds between attempts to acquire or renew.")
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log lines as text or as JSON objects."
    )
    workers: int = Field(default=8, description="Accounts reconciled at the same time.")
    webhook_port: int = Field(default=9443, description="HTTPS port of the admission webhook; 0 disables it.")
    webhook_host: str = Field(default="0.0.0.0", description="Address the webhook listens on.")  # noqa: S104
    webhook_url: str | None = Field(
        default=None, description="Base URL the apiserver calls (local mode); unset: the in-cluster Service."
    )
    webhook_cert_secret: str | None = Field(
        default=None,
        description="TLS Secret (ca.crt, tls.crt, tls.key) kept by cert-manager; unset: own CA.",
    )
    own_tls_secret: str = Field(
        default="vaop-webhook-tls",
        description="Where the operator keeps its own CA and serving certificate (without cert-manager).",
    )
    webhook_service: str = Field(
        default="video-analyzer-operator-webhook", description="The webhook's Service."
    )
    webhook_configuration: str = Field(
        default="video-analyzer-operator",
        description="The ValidatingWebhookConfiguration (made by the chart) whose caBundle it keeps current.",
    )
    data_api_port: int = Field(
        default=8443, description="HTTPS port of the data API (data.videoanalyzer.io); 0 disables it."
    )
    data_api_host: str = Field(default="0.0.0.0", description="Address the data API listens on.")  # noqa: S104
    data_api_service: str = Field(
        default="video-analyzer-operator-api", description="The Service the APIService points at."
    )
    api_service: str = Field(
        default="v1alpha1.data.videoanalyzer.io",
        description="The APIService (made by the chart) whose caBundle it keeps current.",
    )
    pkcs11_modules: list[str] = Field(
        default_factory=list,
        description=(
            "PKCS#11 modules (absolute paths on the operator's host) that KeyVaults may name; empty turns "
            "the pkcs11 provider off. A tenant's KeyVault can never make the operator load another library."
        ),
    )
    vault_addresses_allowed: list[str] = Field(
        default_factory=list,
        description=(
            "Where tenants' KeyVaults may point (openbao.address, azureKeyVault.vaultURL and authorityHost): "
            "host names, suffixes starting with a dot (.vault.azure.net) and CIDRs. Empty: any address "
            "except those refused (link-local and metadata, loopback outside the local mode, the "
            "cluster's Service and Pod ranges)."
        ),
    )
    vault_refused_cidrs: list[str] = Field(
        default_factory=lambda: ["10.96.0.0/12", "10.244.0.0/16"],
        description=(
            "The cluster's Service and Pod ranges, where vaults may not be unless allowed by name or "
            "CIDR (the ranges of the cluster's ServiceCIDR objects are added at start)."
        ),
    )
    backup_identities: list[str] = Field(
        default_factory=lambda: ["system:serviceaccount:velero:velero"],
        description=(
            "Users that back up and restore (Velero's ServiceAccount by default): they may create "
            "account-key Secrets and SealedObjects that verify for their account, and the data API "
            "answers their lists of AccessPolicies and Videos empty (a backup holds the sealed "
            "SealedObjects, never plaintext)."
        ),
    )
    namespace_selector: dict[str, Any] | None = Field(
        default=None,
        description=(
            "Sharding: reconcile only namespaces whose labels match this LabelSelector (JSON), each "
            "claimed on a Lease so no two releases write one account; unset: every namespace."
        ),
    )
    check_interval: float = Field(
        default=30.0, description="Seconds between checks of each (identity, key) pair."
    )
    infrastructure_key_days: float = Field(
        default=90.0,
        description="Cryptoperiod of the infrastructure key: days before a new version; 0: never.",
    )
    system_key_days: float = Field(
        default=365.0, description="Cryptoperiod of the system key: days before a new version; 0: never."
    )
    platform_keys_provider: Literal["kubernetes", "openbao", "pkcs11"] = Field(
        default="kubernetes",
        description=(
            "Where the system key lives, the root of the platform keys: kubernetes (Secrets in this "
            "namespace), openbao (a transit key) or pkcs11 (an HSM). With the last two the "
            "infrastructure key is stored only wrapped by it, and etcd holds no platform key."
        ),
    )
    platform_key_name: str = Field(
        default="vaop-system-key",
        description="The system key's name in OpenBao's transit engine, or its label in the HSM token.",
    )
    platform_openbao_address: str | None = Field(default=None, description="OpenBao's address (openbao).")
    platform_openbao_transit_mount: str = Field(default="transit", description="The transit engine's mount.")
    platform_openbao_auth_mount: str = Field(
        default="kubernetes", description="The Kubernetes auth method's mount the operator logs in with."
    )
    platform_openbao_role: str = Field(default="vaop-platform", description="The auth role of the operator.")
    platform_openbao_token_file: str = Field(
        default="/var/run/secrets/kubernetes.io/serviceaccount/token",
        description="The operator's ServiceAccount token, which it logs in to OpenBao with.",
    )
    platform_openbao_ca_bundle: str | None = Field(default=None, description="OpenBao's CA bundle (PEM).")
    platform_pkcs11_module: str | None = Field(default=None, description="The HSM's PKCS#11 module (pkcs11).")
    platform_pkcs11_token_label: str | None = Field(default=None, description="The HSM token's label.")
    platform_pkcs11_pin: SecretStr | None = Field(default=None, description="The token's user PIN.")
    key_expiry_warning_days: float = Field(
        default=30.0,
        description="Days before the key version that wraps an account expires that KeyExpiring warns.",
    )
    grace_period: float = Field(
        default=300.0, description="Seconds of transient vault failures before accounts go KeyInaccessible."
    )

    @model_validator(mode="after")
    def _sharding_needs_a_leader(self) -> OperatorConfig:
        if self.namespace_selector and not self.leader_election:
            raise ValueError(
                "VAOP_NAMESPACE_SELECTOR needs VAOP_LEADER_ELECTION=true: other releases tell whether "
                "this one is alive from its leader-election Lease"
            )
        self._platform_root_is_complete()
        if self.namespace_selector:
            sharding.selector_string(self.namespace_selector)  # says what is wrong with it, at start
        try:
            self.address_policy()
        except ValueError as error:
            raise ValueError(
                f"VAOP_VAULT_ADDRESSES_ALLOWED or VAOP_VAULT_REFUSED_CIDRS: {error} (an entry is a host "
                "name, a suffix such as .vault.azure.net, or a CIDR such as 192.0.2.0/24)"
            ) from None
        return self

    def _platform_root_is_complete(self) -> None:
        by_provider: dict[str, dict[str, object]] = {
            "kubernetes": {},
            "openbao": {"VAOP_PLATFORM_OPENBAO_ADDRESS": self.platform_openbao_address},
            "pkcs11": {
                "VAOP_PLATFORM_PKCS11_MODULE": self.platform_pkcs11_module,
                "VAOP_PLATFORM_PKCS11_TOKEN_LABEL": self.platform_pkcs11_token_label,
                "VAOP_PLATFORM_PKCS11_PIN": self.platform_pkcs11_pin,
            },
        }
        lacking = extras.missing(self.platform_keys_provider)
        if lacking is not None:
            raise ValueError(f"VAOP_PLATFORM_KEYS_PROVIDER={self.platform_keys_provider}: {lacking}")
        needed = by_provider[self.platform_keys_provider]
        missing = [name for name, value in needed.items() if not value]
        if missing:
            raise ValueError(
                f"VAOP_PLATFORM_KEYS_PROVIDER={self.platform_keys_provider} needs {', '.join(missing)} "
                "(chart: platformKeys." + self.platform_keys_provider + ")"
            )

    def address_policy(self, service_ranges: Iterable[str] = ()) -> addresses.AddressPolicy:
        """The vault address policy; the local mode (webhook_url set: the operator and its vaults run on
        one machine) allows loopback."""
        return addresses.AddressPolicy(
            allowed=tuple(self.vault_addresses_allowed),
            refused=(*self.vault_refused_cidrs, *service_ranges),
            loopback=self.webhook_url is not None,
        )

    def serving_names(self) -> list[str]:
        """DNS names the serving certificate (webhook and data API) must cover."""
        services = [f"{name}.{self.namespace}.svc" for name in (self.webhook_service, self.data_api_service)]
        return [name for service in services for name in (service, f"{service}.cluster.local")]
