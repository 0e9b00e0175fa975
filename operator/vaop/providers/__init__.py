"""Key-vault providers behind one small interface (``base.KeyProvider``), one module each.

``connect`` is the only place that knows every provider: adding one is a new module and one entry
in ``_FACTORIES``.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .. import conditions, models
from . import base, extras, faults, instrumented, openbao
from . import kubernetes as kubernetes_provider
from .addresses import AddressPolicy


@dataclass(frozen=True)
class Identity:
    """The account's identity as providers use it: the Kubernetes API as that ServiceAccount, and
    tokens of it for other audiences (which vaults exchange for their own credentials)."""

    name: str  # "ServiceAccount <namespace>/<name>", for messages
    api: client.ApiClient
    token: Callable[[str], Awaitable[str]]  # audience -> ServiceAccount token
    annotations: Callable[[], Awaitable[Mapping[str, str]]]  # the ServiceAccount's, read when needed


Factory = Callable[[models.KeyVaultSpec, str, Identity], Awaitable[base.KeyProvider]]


@dataclass(frozen=True)
class PlatformPolicy:
    """What the platform team allows tenants' KeyVaults to use (set once at start-up)."""

    pkcs11_modules: frozenset[str] = frozenset()
    addresses: AddressPolicy = field(default_factory=AddressPolicy)


_policy = PlatformPolicy()


def set_policy(policy: PlatformPolicy) -> None:
    global _policy  # noqa: PLW0603 - one setting for the process, made once before any vault is used
    _policy = policy


async def _kubernetes(spec: models.KeyVaultSpec, namespace: str, identity: Identity) -> base.KeyProvider:
    block = spec.provider.kubernetes
    assert block is not None
    return kubernetes_provider.KubernetesKeyProvider(
        identity.api,
        namespace=block.namespace or namespace,
        identity=identity.name,
        soft_delete=block.soft_delete,
        purge_protection=block.purge_protection,
    )


async def _openbao(spec: models.KeyVaultSpec, namespace: str, identity: Identity) -> base.KeyProvider:
    block = spec.provider.openbao
    assert block is not None
    # The identity's API client carries its ServiceAccount token: OpenBao's Kubernetes auth takes it.
    token = str(identity.api.configuration.api_key["BearerToken"]).removeprefix("Bearer ")
    return openbao.OpenBaoKeyProvider(
        address=block.address,
        transit_mount=block.transit_mount,
        auth_mount=block.auth_mount,
        role=block.role,
        service_account_token=token,
        identity=identity.name,
        ca_bundle=block.ca_bundle,
        addresses=_policy.addresses,
    )


async def _pkcs11(spec: models.KeyVaultSpec, namespace: str, identity: Identity) -> base.KeyProvider:
    block = spec.provider.pkcs11
    assert block is not None
    ref = block.pin_secret_ref
    # The PIN is read as the account's identity: RBAC on this Secret is the access grant.
    try:
        secret = await client.CoreV1Api(identity.api).read_namespaced_secret(ref.name, namespace)
    except ApiException as error:
        if error.status == 404:
            raise base.AccessDenied(f"the token PIN Secret {namespace}/{ref.name} does not exist") from None
        if error.status in (401, 403):
            raise base.AccessDenied(
                f"{identity.name} may not read the token PIN (Secret {namespace}/{ref.name}): create a Role "
                f"allowing get on that Secret and a RoleBinding of it to {identity.name}"
            ) from None
        raise base.TransientError(f"reading the PIN Secret failed: {error.status} {error.reason}") from None
    encoded = (secret.data or {}).get(ref.key)
    if encoded is None:
        raise base.AccessDenied(f"Secret {namespace}/{ref.name} has no key {ref.key!r} holding the token PIN")
    pin = base64.b64decode(encoded).decode().strip()
    from . import pkcs11  # imported on use: it loads a native library

    return pkcs11.Pkcs11KeyProvider(
        module=block.module, token_label=block.token_label, pin=pin, identity=identity.name
    )


async def _azure_key_vault(spec: models.KeyVaultSpec, namespace: str, identity: Identity) -> base.KeyProvider:
    block = spec.provider.azure_key_vault
    assert block is not None
    from . import azure  # imported on use: the Azure SDK is large

    # Unset in the KeyVault: the identity's own workload-identity annotations, as on AKS.
    annotations = {} if block.client_id and block.tenant_id else await identity.annotations()
    client_id = block.client_id or annotations.get(azure.CLIENT_ID_ANNOTATION)
    tenant_id = block.tenant_id or annotations.get(azure.TENANT_ID_ANNOTATION)
    if not client_id or not tenant_id:
        missing = "clientID" if not client_id else "tenantID"
        annotation = azure.CLIENT_ID_ANNOTATION if not client_id else azure.TENANT_ID_ANNOTATION
        raise base.AccessDenied(
            f"no Azure {missing} for {identity.name}: set {missing} in the KeyVault, or annotate the "
            f"ServiceAccount with {annotation}"
        )
    connection = await azure.connection(
        vault_url=block.vault_url,
        tenant_id=tenant_id,
        client_id=client_id,
        authority=block.authority_host,
        ca_bundle=block.ca_bundle,
        identity=identity.name,
        service_account_token=await identity.token(azure.TOKEN_AUDIENCE),
        addresses=_policy.addresses,
    )
    return azure.AzureKeyVaultProvider(
        connection, vault_url=block.vault_url, client_id=client_id, identity=identity.name
    )


_FACTORIES: dict[str, Factory] = {
    "kubernetes": _kubernetes,
    "openbao": _openbao,
    "pkcs11": _pkcs11,
    "azureKeyVault": _azure_key_vault,
}


async def _probe_openbao(spec: models.KeyVaultSpec) -> None:
    block = spec.provider.openbao
    assert block is not None
    await openbao.probe(block.address, ca_bundle=block.ca_bundle, policy=_policy.addresses)


async def _probe_pkcs11(spec: models.KeyVaultSpec) -> None:
    block = spec.provider.pkcs11
    assert block is not None
    from . import pkcs11

    await pkcs11.probe(block.module, block.token_label)


async def _probe_azure_key_vault(spec: models.KeyVaultSpec) -> None:
    block = spec.provider.azure_key_vault
    assert block is not None
    from . import azure

    await azure.probe(block.vault_url, ca_bundle=block.ca_bundle, policy=_policy.addresses)


# Reaching a vault without credentials; the kubernetes provider has nothing to reach.
_PROBES: dict[str, Callable[[models.KeyVaultSpec], Awaitable[None]]] = {
    "openbao": _probe_openbao,
    "pkcs11": _probe_pkcs11,
    "azureKeyVault": _probe_azure_key_vault,
}
# Probes shared for a moment: KeyVaults that name one vault probe it once.
_probes: base.RecentReads[None] = base.RecentReads(seconds=5.0, name="vault-probes")


def _addresses(spec: models.KeyVaultSpec) -> list[tuple[str, str]]:
    """(field, URL) of every network address the spec makes the operator connect to."""
    if spec.provider.openbao is not None:
        return [("spec.provider.openbao.address", spec.provider.openbao.address)]
    block = spec.provider.azure_key_vault
    if block is not None:
        return [
            ("spec.provider.azureKeyVault.vaultURL", block.vault_url),
            ("spec.provider.azureKeyVault.authorityHost", block.authority_host),
        ]
    return []


def refusal(spec: models.KeyVaultSpec) -> base.Refusal | None:
    """Why this operator will not use a vault so configured (a provider it lacks, a PKCS#11 module or
    an address the platform does not allow), or None. Told from the spec alone, so admission refuses
    it and KeyVault status shows it at once."""
    name = spec.provider.name
    if name not in _FACTORIES:
        available = ", ".join(sorted(_FACTORIES))
        message = f"the {name} provider is not in this operator version; available: {available}"
        return base.Refusal(conditions.Reason.PROVIDER_UNAVAILABLE, message)
    lacking = extras.missing(name)
    if lacking is not None:
        return base.Refusal(conditions.Reason.PROVIDER_UNAVAILABLE, lacking)
    block = spec.provider.pkcs11
    if block is not None and block.module not in _policy.pkcs11_modules:
        # A module is native code loaded into the operator's process: only those the platform vetted.
        allowed = ", ".join(sorted(_policy.pkcs11_modules)) or "none (the pkcs11 provider is off)"
        message = (
            f"PKCS#11 module {block.module} is not one the platform allows (allowed: {allowed}); name an "
            "allowed module, or ask the platform team to add it (chart value pkcs11.modules)"
        )
        return base.Refusal(conditions.Reason.PROVIDER_UNAVAILABLE, message)
    for field_path, url in _addresses(spec):
        refused = _policy.addresses.check_url(url, field_path=field_path)
        if refused is not None:
            return base.Refusal(conditions.Reason.VAULT_ADDRESS_REFUSED, refused)
    return None


async def probe(spec: models.KeyVaultSpec) -> base.Refusal | None:
    """Why the vault cannot be used, told from its spec or by reaching it without credentials (is it
    there, does it answer as that kind of vault, is it unsealed), or None."""
    refused = refusal(spec)
    if refused is not None or spec.provider.name not in _PROBES:
        return refused
    try:
        await _probes.get(spec.model_dump_json(), lambda: _PROBES[spec.provider.name](spec))
    except base.ProviderError as error:
        return base.Refusal.of(error)
    except (ValueError, OSError) as error:  # what the probe cannot even try: a caBundle that is no PEM
        message = (
            f"the vault cannot be reached as configured ({error.__class__.__name__}: {base.foreign(error)})"
        )
        return base.Refusal(conditions.Reason.PROVIDER_UNAVAILABLE, message)
    return None


async def connect(
    spec: models.KeyVaultSpec, *, namespace: str, name: str, identity: Identity
) -> base.KeyProvider:
    """A provider for the vault described by ``spec`` (a KeyVault in ``namespace``), acting as ``identity``:
    the kubernetes provider calls the API as it, others exchange its tokens for the vault's credentials."""
    refused = refusal(spec)
    if refused is not None:
        raise base.DefinitiveError(refused.message, reason=refused.reason)
    factory = _FACTORIES[spec.provider.name]
    provider = faults.wrap_if_enabled(await factory(spec, namespace, identity), vault=f"{namespace}/{name}")
    return instrumented.Instrumented(provider)
