"""Account reconciliation: make, wrap, re-wrap and guard the account key. The one place that writes it.

Order of work, chosen so that at every instant the account's Secret holds an envelope that opens:
a new key is wrapped and sealed before the Secret is created (create fails if one appeared); a
re-wrap unwraps with the old key, wraps with the new, and replaces the Secret only if its
resourceVersion is still the one that was read.

Restores: an account's key belongs to its account ID, which travels with a backup (in the Secret's
envelope and the account's annotation), never to ``metadata.uid``. A Secret is used only by the
account that holds it (``domain.not_held``); a held Secret restored without its ownerReference, or
still in format 1, is adopted: resealed (outer layer only, no vault call) with the account as its
owner, and the account annotated with its ID. An account that has an ID and no Secret waits for the
restore, and a new key is made only for a new account or when a person asks for it by name.

What a failing key or an unusable Secret means for the account is decided in ``accountproblems.py``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from kubernetes_asyncio import client

from .. import conditions, labels, metrics, models, platformkeys, platformroot, providerpool, wrapping
from ..crypto import envelope
from ..domain import accounts as domain
from ..domain import keys as keys_domain
from ..providers import base
from ..runtime import watchcache
from . import accountproblems as problems
from . import accountwrites

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Account:
    uid: str
    context: wrapping.AccountContext
    status: dict[str, Any]
    grace_expired: bool = False  # its key has failed transiently for longer than the grace period
    account_id: str = ""  # its account-id annotation: "" for a new account (or one from before IDs)
    replace_key: str = ""  # its replace-account-key annotation: the ID of a key a person gives up

    @property
    def secret_name(self) -> str:
        return models.account_key_secret_name(self.context.name)

    @property
    def owner(self) -> accountwrites.Owner:
        return accountwrites.Owner(self.context.namespace, self.context.name, self.uid)

    def identity(self, account_id: str) -> envelope.AccountIdentity:
        """What its envelope is bound to: namespace, name and account ID (never the uid)."""
        return envelope.AccountIdentity(self.context.namespace, self.context.name, account_id)

    @property
    def known_id(self) -> str:
        """The ID of the key this account had: its annotation, or, from before account IDs, its uid
        (what format 1 bound). A person gives a lost key up by naming it."""
        return self.account_id or self.uid

    @property
    def replace_requested(self) -> bool:
        return bool(self.replace_key) and self.replace_key == self.known_id


@dataclass(frozen=True)
class KeyReport:
    """What this reconciliation learnt about the account's CustomerKey, for that key's own status."""

    name: str
    version: base.KeyVersion | None
    problem: wrapping.KeyProblem | None


class Tell(NamedTuple):
    """An Event on the account about something done to its key."""

    reason: str
    message: str
    warning: bool = False


@dataclass(frozen=True)
class Result:
    outcome: domain.Outcome
    key_report: KeyReport | None
    events: list[Tell]
    rotation: str | None = None  # re-wrapped by this new version of its CustomerKey (told per key)
    annotated: str | None = None  # resourceVersion of the account's own annotation write, if any
    retry: bool = False  # look again after a check interval, though nothing may change meanwhile


@dataclass
class _Held:
    """The account's Secret and its envelope, as this reconciliation left them."""

    secret: watchcache.Cached
    envelope: envelope.Envelope
    told: list[Tell] = field(default_factory=list)
    annotated: str | None = None


@dataclass(frozen=True)
class _Done:
    """What an action did to the account key."""

    sealed: envelope.Envelope
    kcv: str
    wrapped_at: str
    told: list[Tell]
    rotation: str | None = None
    annotated: str | None = None


class AccountReconciler:
    def __init__(
        self,
        api: client.ApiClient,
        platform: platformkeys.PlatformKeys,
        identities: Any,
        secrets: watchcache.WatchCache,
        pool: providerpool.ProviderPool,
        *,
        expiry_warning: float = 30
        * 86400,  # seconds before a wrapping version expires that KeyExpiring warns
    ) -> None:
        self._expiry_warning = expiry_warning
        self._platform = platform
        self._identities = identities
        self._writes = accountwrites.AccountWrites(api, secrets)
        self._pool = pool

    def use_platform(self, platform: platformkeys.PlatformKeys) -> None:
        """Platform keys rotated: envelopes move to the new versions as they are reconciled."""
        self._platform = platform

    async def reconcile(self, account: Account) -> Result:
        key_existed = bool(account.status.get("accountKey"))
        secret = await self._writes.read_secret(
            account.owner, confirm_absence=key_existed or bool(account.account_id)
        )
        held: _Held | None = None
        if secret is None:
            waiting = self._without_secret(account, key_existed)
            if waiting is not None:
                return Result(waiting, None, [])
        else:
            unusable, current = problems.held_envelope(account.secret_name, secret)
            if unusable is not None or current is None:
                return Result(unusable or domain.outcome_error(conditions.Reason.UNWRAP_FAILED, ""), None, [])
            refused = domain.not_held(
                namespace=account.context.namespace,
                name=account.context.name,
                account_id=account.account_id,
                account_uid=account.uid,
                held=current.account,
                secret_owners=secret.metadata.owner_uids,
                secret_name=account.secret_name,
            )
            if refused is not None:
                return Result(refused, None, [])
            try:
                held = await self._adopt(account, secret, current)
            except (envelope.EnvelopeError, platformroot.PlatformKeyMissing) as error:
                return Result(problems.unopenable(error), None, [])
        return await self._wrap_as_specified(account, held, key_existed)

    def _without_secret(self, account: Account, key_existed: bool) -> domain.Outcome | None:
        """Why an account without a Secret must wait (lost, or a restore under way); None: make a key."""
        action = domain.decide(
            secret_present=False,
            key_existed=key_existed,
            has_account_id=bool(account.account_id),
            replace_requested=account.replace_requested,
            current=None,
            target_same=False,
        )
        where = {"namespace": account.context.namespace, "name": account.context.name}
        if action is domain.Action.LOST:
            return domain.outcome_lost(account.secret_name, **where, account_id=account.known_id)
        if action is domain.Action.AWAIT_RESTORE:
            return domain.outcome_awaiting_restore(
                account.secret_name, **where, account_id=account.account_id
            )
        return None

    async def _wrap_as_specified(self, account: Account, held: _Held | None, key_existed: bool) -> Result:
        current = held.envelope if held is not None else None
        told = held.told if held is not None else []
        annotated = held.annotated if held is not None else None
        spec = account.context.spec
        key_name = spec.encryption.key_ref.name if spec.encryption.key_ref else None
        async with wrapping.Session(self._platform, self._identities, pool=self._pool) as session:
            try:
                target = await session.target(account.context)
            except wrapping.KeyProblem as problem:
                report = KeyReport(key_name, None, problem) if key_name else None
                outcome = _outcome_of(account, problem, current, target=None)
                return Result(outcome, report, told, annotated=annotated)
            report = KeyReport(key_name, target.version, None) if key_name else None
            action = domain.decide(
                secret_present=held is not None,
                key_existed=key_existed,
                has_account_id=bool(account.account_id),
                replace_requested=account.replace_requested,
                current=current.inner if current else None,
                target_same=current is not None and target.same_key(current.inner),
            )
            try:
                done = await self._apply(action, account=account, session=session, target=target, held=held)
            except wrapping.KeyProblem as problem:
                outcome = _outcome_of(account, problem, current, target=target)
                retry = isinstance(problem, problems.SourceProblem)
                return Result(outcome, report, told, annotated=annotated, retry=retry)
            except problems.SecretInTheWay as in_the_way:
                return Result(in_the_way.outcome, report, told, annotated=annotated)
            except (envelope.EnvelopeError, platformroot.PlatformKeyMissing) as error:
                return Result(problems.unopenable(error), report, told, annotated=annotated)

        status = domain.account_key_status(
            secret_name=account.secret_name,
            key_check_value=done.kcv,
            sealed=done.sealed,
            wrapped_at=done.wrapped_at,
            customer_key=key_name,
        )
        shown = conditions.find(account.status.get("conditions"), conditions.KEY_EXPIRING) is not None
        note = keys_domain.expiry_note(target.version, warning=self._expiry_warning)
        return Result(
            domain.with_expiry(domain.outcome_wrapped(done.sealed.inner, status), note, shown=shown),
            report,
            [*told, *done.told],
            done.rotation,
            annotated=done.annotated or annotated,
        )

    # ---- adopting what a restore brought back, and format moves ------------------------------------

    async def _adopt(self, account: Account, secret: watchcache.Cached, current: envelope.Envelope) -> _Held:
        """Make the held Secret wholly this account's: format 2, owned by this account object, naming
        its account ID; and the account annotated with that ID. Only the outer layer is resealed (the
        infrastructure key alone, no vault call), so a restored account whose customer key is revoked
        is adopted too, and goes KeyInaccessible with its own key."""
        account_id = current.account.id
        held = _Held(secret, current)
        restored = account.uid not in secret.metadata.owner_uids
        annotations = secret.metadata.annotations or {}
        stale = (
            current.version != envelope.FORMAT_VERSION
            or current.outer_key_version != self._platform.infrastructure_version  # a rotation
            or secret.metadata.owner_uids != (account.uid,)
            or annotations.get(labels.ANNOTATION_ACCOUNT_ID) != account_id
        )
        if stale:
            version = self._platform.infrastructure_version
            moved = envelope.reseal(
                current,
                account=account.identity(account_id),
                outer_key=self._platform.infrastructure_key(current.outer_key_version),
                new_outer_key=self._platform.infrastructure_key(version),
                new_outer_key_version=version,
                identity=_wrapping_identity(account, current.inner) if not current.inner.identity else None,
            )
            kcv = annotations.get(labels.ANNOTATION_KEY_CHECK_VALUE, "")
            wrapped_at = annotations.get(labels.ANNOTATION_WRAPPED_AT) or conditions.now_rfc3339()
            held.secret = await self._writes.replace_secret(
                account.owner, secret, moved, kcv=kcv, wrapped_at=wrapped_at
            )
            held.envelope = moved
            if current.version != envelope.FORMAT_VERSION:
                metrics.WRAPS.labels("format", moved.inner.type, "ok").inc()
        if account.account_id != account_id:
            held.annotated = await self._writes.annotate(account.owner, account_id)
        if restored:
            kcv = annotations.get(labels.ANNOTATION_KEY_CHECK_VALUE, "")
            message = (
                f"The account key in Secret {account.secret_name} (account ID {account_id}, key-check value "
                f"{kcv}) is this account's: adopted after a restore."
            )
            held.told.append(Tell("AccountKeyAdopted", message))
        return held

    # ---- the three actions --------------------------------------------------------------------

    async def _apply(
        self,
        action: domain.Action,
        *,
        account: Account,
        session: wrapping.Session,
        target: wrapping.WrappingKey,
        held: _Held | None,
    ) -> _Done:
        if action is not domain.Action.KEEP and target.version.expired():
            # As in Azure Key Vault: an expired version opens what it wrapped and wraps nothing new.
            note = keys_domain.expiry_note(target.version, warning=0)
            raise problems.TargetProblem(conditions.Reason.KEY_EXPIRED, note or "", definitive=True)
        if action is domain.Action.CREATE:
            return await self._create(account, target)
        assert held is not None
        current = held.envelope
        identity = account.identity(current.account.id)
        annotations = held.secret.metadata.annotations or {}
        kcv = annotations.get(labels.ANNOTATION_KEY_CHECK_VALUE, "")
        if action is domain.Action.KEEP:
            # The outer layer is checked on every reconciliation (the infrastructure key alone, no vault
            # call): a flipped bit or an envelope moved from another account shows at once.
            outer_key = self._platform.infrastructure_key(current.outer_key_version)
            envelope.unseal(current, account=identity, outer_key=outer_key)
            wrapped_at = annotations.get(labels.ANNOTATION_WRAPPED_AT) or conditions.now_rfc3339()
            return _Done(current, kcv, wrapped_at, [])
        started = time.perf_counter()
        try:
            rewrapped = await self._rewrap_in_vault(identity, target, current)
            if rewrapped is not None:
                sealed = rewrapped
            else:
                account_key = await session.open(account.context, identity, current)
                if envelope.key_check_value(account_key) != kcv:
                    raise envelope.EnvelopeError(
                        "the opened account key does not match the recorded key-check value"
                    )
                sealed = await self._wrap(identity, target, account_key)
        except wrapping.KeyProblem as problem:
            if isinstance(problem, problems.TargetProblem):
                raise
            definitive = problem.definitive
            raise problems.SourceProblem(problem.reason, problem.message, definitive=definitive) from None
        wrapped_at = conditions.now_rfc3339()
        await self._writes.replace_secret(account.owner, held.secret, sealed, kcv=kcv, wrapped_at=wrapped_at)
        metrics.WRAPS.labels("rewrap", sealed.inner.type, "ok").inc()
        metrics.REWRAP_SECONDS.observe(time.perf_counter() - started)
        if target.same_key_other_version(current.inner):
            # A rotation re-wraps every account on the key: one Event on the CustomerKey says it (and,
            # for the system key, the leader's log), not one per account.
            return _Done(sealed, kcv, wrapped_at, [], rotation=sealed.inner.key_version)
        old, new = domain.describe(current.inner), domain.describe(sealed.inner)
        return _Done(
            sealed,
            kcv,
            wrapped_at,
            [Tell("AccountKeyRewrapped", f"Account key re-wrapped from {old} to {new}.")],
        )

    async def _create(self, account: Account, target: wrapping.WrappingKey) -> _Done:
        """A new account key under a new account ID: the Secret first (owned by this account object,
        so a crash before the annotation still finds it this account's), then the annotation."""
        account_id = envelope.new_account_id()
        account_key = envelope.new_account_key()
        sealed = await self._wrap(account.identity(account_id), target, account_key)
        kcv = envelope.key_check_value(account_key)
        wrapped_at = conditions.now_rfc3339()
        try:
            await self._writes.create_secret(account.owner, sealed, kcv=kcv, wrapped_at=wrapped_at)
        except accountwrites.SecretExists as exists:
            # One the watch has not delivered yet, or one that is not the operator's (so not watched).
            # Never overwrite it; say so if it is not ours, else read it on the next run.
            unusable = problems.held_envelope(account.secret_name, exists.secret)[0]
            if unusable is not None:
                raise problems.SecretInTheWay(unusable) from None
            raise accountwrites.Retry(f"creating Secret {account.secret_name}: it exists") from None
        annotated = await self._writes.annotate(account.owner, account_id)
        metrics.WRAPS.labels("create", sealed.inner.type, "ok").inc()
        if account.replace_requested:
            message = (
                f"A new account key was made, as asked (annotation {labels.ANNOTATION_REPLACE_ACCOUNT_KEY}), "
                f"in place of the key of account ID {account.replace_key}: data sealed under that key cannot "
                f"be read. The account is now account ID {account_id}, "
                f"wrapped by {domain.describe(sealed.inner)}."
            )
            told = Tell("AccountKeyReplaced", message, warning=True)
        else:
            told = Tell(
                "AccountKeyCreated", f"Account key made and wrapped by {domain.describe(sealed.inner)}."
            )
        return _Done(sealed, kcv, wrapped_at, [told], annotated=annotated)

    async def _rewrap_in_vault(
        self, identity: envelope.AccountIdentity, target: wrapping.WrappingKey, current: envelope.Envelope
    ) -> envelope.Envelope | None:
        """Another version of the same key: let the vault re-encrypt, if it can (no plaintext leaves it)."""
        if not target.same_key_other_version(current.inner):
            return None
        outer_key = self._platform.infrastructure_key(current.outer_key_version)
        inner_wrapped = envelope.unseal(current, account=identity, outer_key=outer_key)
        try:
            wrapped = await target.provider.rewrap(target.version, inner_wrapped)
        except base.ProviderError as error:
            raise wrapping.KeyProblem.from_provider(error) from None
        return None if wrapped is None else self._seal(identity, target, wrapped)

    async def _wrap(
        self, identity: envelope.AccountIdentity, target: wrapping.WrappingKey, account_key: bytes
    ) -> envelope.Envelope:
        try:
            wrapped = await target.provider.wrap(target.version, account_key)
        except base.ProviderError as error:
            raise problems.TargetProblem.from_provider(error) from None
        return self._seal(identity, target, wrapped)

    def _seal(
        self, identity: envelope.AccountIdentity, target: wrapping.WrappingKey, wrapped: base.Wrapped
    ) -> envelope.Envelope:
        inner = envelope.InnerKeyRef(**{**target.ref.__dict__, "algorithm": wrapped.algorithm})
        version = self._platform.infrastructure_version
        return envelope.seal(
            wrapped.ciphertext,
            account=identity,
            inner=inner,
            outer_key=self._platform.infrastructure_key(version),
            outer_key_version=version,
        )


def _outcome_of(
    account: Account,
    problem: wrapping.KeyProblem,
    current: envelope.Envelope | None,
    *,
    target: wrapping.WrappingKey | None,
) -> domain.Outcome:
    return problems.on_key_problem(
        problem,
        context=account.context,
        status=account.status,
        grace_expired=account.grace_expired,
        current=current,
        target=target,
    )


def _wrapping_identity(account: Account, inner: envelope.InnerKeyRef) -> str:
    """The identity a format 1 envelope (which did not record one) was most likely wrapped as: the
    account's identity, when its spec still names that key; else the default ``<account>-identity``."""
    if inner.type != models.EncryptionType.CUSTOMER_KEY.value:
        return ""
    key = account.context.customer_key
    if key is not None and (key.vault_ref.name, key.key_name) == (inner.key_vault, inner.key_name):
        return account.context.identity.name
    return f"{account.context.name}-identity"
