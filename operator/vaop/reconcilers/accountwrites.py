"""What the account reconciler reads and writes in the API: the account key's Secret and the
account's account-ID annotation. Each write is conditional, so a crash or a race leaves an envelope
that opens: a create never overwrites, a replace only applies to the resourceVersion read, and the
annotation only to the account object (uid) it was meant for.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .. import kubeclient, labels, models
from ..crypto import envelope
from ..runtime import retry, watchcache


def owner_reference(name: str, uid: str) -> client.V1OwnerReference:
    """Owned by the account: garbage collection removes what the account owns when it is deleted."""
    return client.V1OwnerReference(
        api_version=models.API_VERSION, kind="VideoAnalyzerAccount", name=name, uid=uid, controller=True
    )


class Retry(retry.Transient):
    """Something changed underneath (a write conflict, a transient API error): reconcile again soon."""


class SecretExists(Exception):
    """A create found a Secret of that name: ``secret`` is what it is now."""

    def __init__(self, secret: watchcache.Cached) -> None:
        super().__init__(f"Secret {secret.metadata.name} exists")
        self.secret = secret


@dataclass(frozen=True)
class Owner:
    """The account object whose key this is."""

    namespace: str
    name: str
    uid: str

    @property
    def secret_name(self) -> str:
        return models.account_key_secret_name(self.name)


def retry_or_refused(error: ApiException, doing: str) -> Exception:
    """A conflict or a transient failure is retried soon; a refusal (a policy, a quota, RBAC) is raised
    as it is, for the controller to show on the account."""
    if error.status in (0, 409, 429) or error.status >= 500:
        return Retry(f"{doing}: {error.status} {error.reason}")
    return error


class AccountWrites:
    def __init__(self, api: client.ApiClient, secrets: watchcache.WatchCache) -> None:
        self._core = client.CoreV1Api(api)
        self._custom = client.CustomObjectsApi(api)
        self._secrets = secrets  # the account-key Secrets, as the watch (and this process's writes) left them

    async def read_secret(self, owner: Owner, *, confirm_absence: bool) -> watchcache.Cached | None:
        """From the watch cache; a Secret missing there is asked for when its absence would mean a
        lost key (the watch may not have seen a Secret just made, or just restored). A stale copy is
        harmless: writes are conditional on its resourceVersion, and a create never overwrites."""
        cached = self._secrets.get(owner.namespace, owner.secret_name)
        if cached is not None or not confirm_absence:
            return cached
        return await self._read_live(owner)

    async def create_secret(
        self, owner: Owner, sealed: envelope.Envelope, *, kcv: str, wrapped_at: str
    ) -> None:
        """Create the Secret; ``SecretExists`` if one of that name is there already (never overwritten)."""
        try:
            made = await self._core.create_namespaced_secret(
                owner.namespace, _secret_body(owner, sealed, kcv, wrapped_at, None)
            )
        except ApiException as error:
            if error.status == 409:
                existing = await self._read_live(owner)
                if existing is not None:
                    raise SecretExists(existing) from None
            raise retry_or_refused(error, f"creating Secret {owner.secret_name}") from None
        self._secrets.put(made)

    async def replace_secret(
        self, owner: Owner, secret: watchcache.Cached, sealed: envelope.Envelope, *, kcv: str, wrapped_at: str
    ) -> watchcache.Cached:
        """Replace ``secret`` if it is unchanged since read; what it is now."""
        body = _secret_body(owner, sealed, kcv, wrapped_at, secret.metadata.resource_version)
        try:
            replaced = await self._core.replace_namespaced_secret(owner.secret_name, owner.namespace, body)
        except ApiException as error:
            # 409: changed since read; the old envelope is still there and still opens. Try again.
            raise retry_or_refused(error, f"replacing Secret {owner.secret_name}") from None
        self._secrets.put(replaced)
        return watchcache.cached(replaced)

    async def annotate(self, owner: Owner, account_id: str) -> str:
        """Put the account ID on the account (and drop a replace request it answers); the
        resourceVersion written. Conditional on the uid, so an account deleted and made anew
        meanwhile is never given this key's ID."""
        patch = {
            "metadata": {
                "uid": owner.uid,
                "annotations": {
                    labels.ANNOTATION_ACCOUNT_ID: account_id,
                    labels.ANNOTATION_REPLACE_ACCOUNT_KEY: None,
                },
            }
        }
        try:
            written = await self._custom.patch_namespaced_custom_object(
                models.GROUP,
                models.VERSION,
                owner.namespace,
                "videoanalyzeraccounts",
                owner.name,
                patch,
                _content_type=kubeclient.MERGE_PATCH,
            )
        except ApiException as error:
            if error.status in (404, 422):  # gone, or made anew (another uid): nothing to annotate
                raise Retry(f"annotating {owner.name}: {error.status} {error.reason}") from None
            raise retry_or_refused(error, f"annotating {owner.name}") from None
        return str(written["metadata"]["resourceVersion"])

    async def _read_live(self, owner: Owner) -> watchcache.Cached | None:
        try:
            secret = await self._core.read_namespaced_secret(owner.secret_name, owner.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise retry_or_refused(error, f"reading Secret {owner.secret_name}") from None
        return watchcache.cached(secret)


def _secret_body(
    owner: Owner, sealed: envelope.Envelope, kcv: str, wrapped_at: str, resource_version: str | None
) -> client.V1Secret:
    return client.V1Secret(
        metadata=client.V1ObjectMeta(
            name=owner.secret_name,
            namespace=owner.namespace,
            resource_version=resource_version,
            labels={
                **labels.MANAGED,
                labels.COMPONENT: labels.ACCOUNT_KEY_COMPONENT,
                labels.ACCOUNT: owner.name,
            },
            annotations={
                labels.ANNOTATION_KEY_CHECK_VALUE: kcv,
                labels.ANNOTATION_WRAPPED_AT: wrapped_at,
                labels.ANNOTATION_ACCOUNT_ID: sealed.account.id,
            },
            owner_references=[owner_reference(owner.name, owner.uid)],
        ),
        type=labels.ACCOUNT_KEY_SECRET_TYPE,
        data={labels.ENVELOPE_DATA_KEY: base64.b64encode(envelope.encode(sealed)).decode()},
    )
