"""Account reconciliation: make, wrap, re-wrap and guard the account key. The one place that writes it.

Order of work, chosen so that at every instant the account's Secret holds an envelope that opens:
a new key is wrapped and sealed before the Secret is created (create fails if one appeared); a
re-wrap unwraps with the old key, wraps with the new, and replaces the Secret only if its
resourceVersion is still the one that was read.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .. import conditions, kubeclient, labels, metrics, models, platformkeys, wrapping
from ..crypto import envelope
from ..domain import accounts as domain
from ..providers import base
from . import workqueue

logger = logging.getLogger(__name__)


def owner_reference(name: str, uid: str) -> client.V1OwnerReference:
    """Owned by the account: garbage collection removes what the account owns when it is deleted."""
    return client.V1OwnerReference(
        api_version=models.API_VERSION, kind="VideoAnalyzerAccount", name=name, uid=uid, controller=True
    )


class Retry(workqueue.Transient):
    """Something changed underneath (a write conflict, a transient API error): reconcile again soon."""


class SecretInTheWay(Exception):
    """The create found a Secret of that name that the watch does not show: not the operator's."""

    def __init__(self, outcome: domain.Outcome) -> None:
        super().__init__(outcome.conditions[0].message)
        self.outcome = outcome


def _held_envelope(
    account: Account, secret: kubeclient.Cached
) -> tuple[domain.Outcome | None, envelope.Envelope | None]:
    """The envelope in the account's Secret, or why the account cannot go on with that Secret. Either
    way no new key is made: a Secret the operator did not make is never overwritten (its type is
    immutable and its label guarded by the webhook, so neither is set by hand), and an envelope
    altered by hand or by a bad restore is to be restored, not replaced."""
    ours = secret.type == labels.ACCOUNT_KEY_SECRET_TYPE and (
        (secret.metadata.labels or {}).get(labels.COMPONENT) == labels.ACCOUNT_KEY_COMPONENT
    )
    if not ours:
        message = (
            f"Secret {account.secret_name} exists and was not made by the operator (type {secret.type}, "
            f"not {labels.ACCOUNT_KEY_SECRET_TYPE}). The operator never overwrites a Secret it did not "
            "make: rename or delete that Secret, and the account key is made"
        )
        return domain.outcome_error(conditions.Reason.ACCOUNT_KEY_NAME_TAKEN, message), None
    try:
        return None, domain.envelope_in(secret.data)
    except (envelope.EnvelopeError, ValueError) as error:
        message = (
            f"Secret {account.secret_name} does not hold a valid envelope ({error}). No new key is made; "
            "restore the Secret from backup (docs/operations.md#restore-an-account-key)"
        )
        return domain.outcome_error(conditions.Reason.UNWRAP_FAILED, message), None


def _retry_or_refused(error: ApiException, doing: str) -> Exception:
    """A conflict or a transient failure is retried soon; a refusal (a policy, a quota, RBAC) is raised
    as it is, for the controller to show on the account."""
    if error.status in (0, 409, 429) or error.status >= 500:
        return Retry(f"{doing}: {error.status} {error.reason}")
    return error


@dataclass(frozen=True)
class Account:
    uid: str
    context: wrapping.AccountContext
    status: dict[str, Any]
    grace_expired: bool = False  # its key has failed transiently for longer than the grace period

    @property
    def envelope_identity(self) -> envelope.AccountIdentity:
        return envelope.AccountIdentity(self.uid, self.context.namespace, self.context.name)

    @property
    def secret_name(self) -> str:
        return models.account_key_secret_name(self.context.name)


@dataclass(frozen=True)
class KeyReport:
    """What this reconciliation learnt about the account's CustomerKey, for that key's own status."""

    name: str
    version: base.KeyVersion | None
    problem: wrapping.KeyProblem | None


@dataclass(frozen=True)
class Result:
    outcome: domain.Outcome
    key_report: KeyReport | None
    events: list[tuple[str, str]]  # (reason, message) of what was done, for the account's Events
    rotation: str | None = None  # re-wrapped by this new version of its CustomerKey (told per key)


class AccountReconciler:
    def __init__(
        self,
        api: client.ApiClient,
        platform: platformkeys.PlatformKeys,
        identities: Any,
        secrets: kubeclient.WatchCache,
        pool: wrapping.ProviderPool,
    ) -> None:
        self._core = client.CoreV1Api(api)
        self._platform = platform
        self._identities = identities
        self._secrets = secrets  # the account-key Secrets, as the watch (and this process's writes) left them
        self._pool = pool

    async def reconcile(self, account: Account) -> Result:
        key_existed = bool(account.status.get("accountKey"))
        secret = await self._read_secret(account, confirm_absence=key_existed)
        current: envelope.Envelope | None = None
        if secret is not None:
            unusable, current = _held_envelope(account, secret)
            if unusable is not None:
                return Result(unusable, None, [])
        key_name = (
            account.context.spec.encryption.key_ref.name if account.context.spec.encryption.key_ref else None
        )

        async with wrapping.Session(self._platform, self._identities, pool=self._pool) as session:
            try:
                target = await session.target(account.context)
            except wrapping.KeyProblem as problem:
                report = KeyReport(key_name, None, problem) if key_name else None
                return Result(self._on_problem(account, problem, secret, current, key_existed), report, [])
            report = KeyReport(key_name, target.version, None) if key_name else None

            action = domain.decide(
                secret_present=secret is not None,
                key_existed=key_existed,
                current=current.inner if current else None,
                target_same=current is not None and target.same_key(current.inner),
            )
            if action is domain.Action.LOST:
                return Result(domain.outcome_lost(account.secret_name), report, [])
            try:
                sealed, kcv, wrapped_at, events, rotation = await self._apply(
                    action, account=account, session=session, target=target, secret=secret, current=current
                )
            except wrapping.KeyProblem as problem:
                return Result(self._on_problem(account, problem, secret, current, key_existed), report, [])
            except (envelope.EnvelopeError, SecretInTheWay) as error:
                unusable = (
                    error.outcome
                    if isinstance(error, SecretInTheWay)
                    else domain.outcome_error(conditions.Reason.UNWRAP_FAILED, str(error))
                )
                return Result(unusable, report, [])

        status = domain.account_key_status(
            secret_name=account.secret_name, key_check_value=kcv, sealed=sealed, wrapped_at=wrapped_at
        )
        return Result(domain.outcome_wrapped(sealed.inner, status), report, events, rotation)

    # ---- the three actions --------------------------------------------------------------------

    async def _apply(
        self,
        action: domain.Action,
        *,
        account: Account,
        session: wrapping.Session,
        target: wrapping.WrappingKey,
        secret: kubeclient.Cached | None,
        current: envelope.Envelope | None,
    ) -> tuple[envelope.Envelope, str, str, list[tuple[str, str]], str | None]:
        if action is domain.Action.CREATE:
            account_key = envelope.new_account_key()
            sealed = await self._wrap(account, target, account_key)
            kcv = envelope.key_check_value(account_key)
            wrapped_at = conditions.now_rfc3339()
            await self._create_secret(account, sealed, kcv, wrapped_at)
            metrics.WRAPS.labels("create", sealed.inner.type, "ok").inc()
            return (
                sealed,
                kcv,
                wrapped_at,
                [("AccountKeyCreated", f"Account key made and wrapped by {domain.describe(sealed.inner)}.")],
                None,
            )
        assert secret is not None and current is not None
        annotations = secret.metadata.annotations or {}
        kcv = annotations.get(labels.ANNOTATION_KEY_CHECK_VALUE, "")
        if action is domain.Action.KEEP:
            # The outer layer is checked on every reconciliation (the infrastructure key alone, no vault
            # call): a flipped bit or an envelope moved from another account shows at once.
            outer_key = self._platform.infrastructure_key(current.outer_key_version)
            envelope.unseal(current, account=account.envelope_identity, outer_key=outer_key)
            wrapped_at = annotations.get(labels.ANNOTATION_WRAPPED_AT) or conditions.now_rfc3339()
            return current, kcv, wrapped_at, [], None
        started = time.perf_counter()
        rewrapped = await self._rewrap_in_vault(account, target, current)
        if rewrapped is not None:
            sealed = rewrapped
        else:
            account_key = await session.open(account.context, account.envelope_identity, current)
            if envelope.key_check_value(account_key) != kcv:
                raise envelope.EnvelopeError(
                    "the opened account key does not match the recorded key-check value"
                )
            sealed = await self._wrap(account, target, account_key)
        wrapped_at = conditions.now_rfc3339()
        await self._replace_secret(account, secret, sealed, kcv, wrapped_at)
        metrics.WRAPS.labels("rewrap", sealed.inner.type, "ok").inc()
        metrics.REWRAP_SECONDS.observe(time.perf_counter() - started)
        if sealed.inner.type == models.EncryptionType.CUSTOMER_KEY.value and target.same_key_other_version(
            current.inner
        ):
            # A rotation re-wraps every account on the key: one Event on the CustomerKey says it.
            return sealed, kcv, wrapped_at, [], sealed.inner.key_version
        old, new = domain.describe(current.inner), domain.describe(sealed.inner)
        message = f"Account key re-wrapped from {old} to {new}."
        return sealed, kcv, wrapped_at, [("AccountKeyRewrapped", message)], None

    async def _rewrap_in_vault(
        self, account: Account, target: wrapping.WrappingKey, current: envelope.Envelope
    ) -> envelope.Envelope | None:
        """Another version of the same key: let the vault re-encrypt, if it can (no plaintext leaves it)."""
        if not target.same_key_other_version(current.inner):
            return None
        outer_key = self._platform.infrastructure_key(current.outer_key_version)
        inner_wrapped = envelope.unseal(current, account=account.envelope_identity, outer_key=outer_key)
        try:
            wrapped = await target.provider.rewrap(target.version, inner_wrapped)
        except base.ProviderError as error:
            raise wrapping.KeyProblem.from_provider(error) from None
        return None if wrapped is None else self._seal(account, target, wrapped)

    async def _wrap(
        self, account: Account, target: wrapping.WrappingKey, account_key: bytes
    ) -> envelope.Envelope:
        try:
            wrapped = await target.provider.wrap(target.version, account_key)
        except base.ProviderError as error:
            raise wrapping.KeyProblem.from_provider(error) from None
        return self._seal(account, target, wrapped)

    def _seal(
        self, account: Account, target: wrapping.WrappingKey, wrapped: base.Wrapped
    ) -> envelope.Envelope:
        inner = envelope.InnerKeyRef(**{**target.ref.__dict__, "algorithm": wrapped.algorithm})
        version = self._platform.infrastructure_version
        return envelope.seal(
            wrapped.ciphertext,
            account=account.envelope_identity,
            inner=inner,
            outer_key=self._platform.infrastructure_key(version),
            outer_key_version=version,
        )

    # ---- problems -----------------------------------------------------------------------------

    def _on_problem(
        self,
        account: Account,
        problem: wrapping.KeyProblem,
        secret: kubeclient.Cached | None,
        current: envelope.Envelope | None,
        key_existed: bool,
    ) -> domain.Outcome:
        if secret is None and key_existed:
            return domain.outcome_lost(account.secret_name)
        if problem.reason == conditions.Reason.PLATFORM_KEY_MISSING:
            return domain.outcome_error(problem.reason, problem.message)
        inaccessible = problem.reason in wrapping.INACCESSIBLE_REASONS
        if not problem.definitive and account.grace_expired:
            # A vault that has not answered for the whole grace period is treated as gone.
            message = (
                f"{domain.sentence(problem.message)} The vault has failed for longer than the grace period."
            )
            problem = wrapping.KeyProblem(problem.reason, message, definitive=True)
            inaccessible = True
        if current is not None and problem.definitive and inaccessible and self._wraps_now(account, current):
            return domain.outcome_current_key_inaccessible(
                reason=problem.reason, message=problem.message, current=current.inner
            )
        return domain.outcome_key_problem(
            reason=problem.reason,
            message=problem.message,
            definitive=problem.definitive,
            inaccessible=inaccessible,
            current=current.inner if current else None,
            locked=account.status.get("state") == models.AccountState.KEY_INACCESSIBLE.value,
        )

    @staticmethod
    def _wraps_now(account: Account, current: envelope.Envelope) -> bool:
        """Is the key that failed the one that wraps the account key now (not one it moves to)?"""
        key = account.context.customer_key
        if current.inner.type != models.EncryptionType.CUSTOMER_KEY.value:
            return False
        if key is None:
            return True  # the CustomerKey resource is gone: its key is the one in use
        return (current.inner.key_vault, current.inner.key_name) == (key.vault_ref.name, key.key_name)

    # ---- the Secret ---------------------------------------------------------------------------

    async def _read_secret(self, account: Account, *, confirm_absence: bool) -> kubeclient.Cached | None:
        """From the watch cache; a Secret missing there is asked for when its absence would mean a
        lost key (the watch may not have seen a Secret just made). A stale copy is harmless: writes
        are conditional on its resourceVersion, and a create never overwrites."""
        cached = self._secrets.get(account.context.namespace, account.secret_name)
        if cached is not None or not confirm_absence:
            return cached
        return await self._read_live(account)

    async def _read_live(self, account: Account) -> kubeclient.Cached | None:
        try:
            secret = await self._core.read_namespaced_secret(account.secret_name, account.context.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise _retry_or_refused(error, f"reading Secret {account.secret_name}") from None
        return kubeclient.cached(secret)

    def _secret_body(
        self,
        account: Account,
        sealed: envelope.Envelope,
        kcv: str,
        wrapped_at: str,
        resource_version: str | None,
    ) -> client.V1Secret:
        return client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=account.secret_name,
                namespace=account.context.namespace,
                resource_version=resource_version,
                labels={
                    **labels.MANAGED,
                    labels.COMPONENT: labels.ACCOUNT_KEY_COMPONENT,
                    labels.ACCOUNT: account.context.name,
                },
                annotations={
                    labels.ANNOTATION_KEY_CHECK_VALUE: kcv,
                    labels.ANNOTATION_WRAPPED_AT: wrapped_at,
                },
                owner_references=[owner_reference(account.context.name, account.uid)],
            ),
            type=labels.ACCOUNT_KEY_SECRET_TYPE,
            data={labels.ENVELOPE_DATA_KEY: base64.b64encode(envelope.encode(sealed)).decode()},
        )

    async def _create_secret(
        self, account: Account, sealed: envelope.Envelope, kcv: str, wrapped_at: str
    ) -> None:
        try:
            made = await self._core.create_namespaced_secret(
                account.context.namespace, self._secret_body(account, sealed, kcv, wrapped_at, None)
            )
        except ApiException as error:
            # 409: a Secret of that name exists (one the watch has not delivered yet, or one that is not
            # the operator's and so not watched). Never overwrite it; say so if it is not ours.
            if error.status == 409:
                existing = await self._read_live(account)
                unusable = _held_envelope(account, existing)[0] if existing is not None else None
                if unusable is not None:
                    raise SecretInTheWay(unusable) from None
            raise _retry_or_refused(error, f"creating Secret {account.secret_name}") from None
        self._secrets.put(made)

    async def _replace_secret(
        self,
        account: Account,
        secret: kubeclient.Cached,
        sealed: envelope.Envelope,
        kcv: str,
        wrapped_at: str,
    ) -> None:
        body = self._secret_body(account, sealed, kcv, wrapped_at, secret.metadata.resource_version)
        try:
            replaced = await self._core.replace_namespaced_secret(
                account.secret_name, account.context.namespace, body
            )
        except ApiException as error:
            # 409: changed since read; the old envelope is still there and still opens. Try again.
            raise _retry_or_refused(error, f"replacing Secret {account.secret_name}") from None
        self._secrets.put(replaced)
