"""The API permissions the operator's code uses, and a start-up check that it has them.

The chart's ClusterRole and Role grant exactly these (a chart test compares them). A replica that
lacks one says which, and why it is needed, in its log and in its readiness answer, instead of
stalling on 403s deep inside a watch or a reconciliation.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from kubernetes_asyncio import client

from . import models
from .runtime import retry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Permission:
    verb: str
    group: str
    resource: str
    why: str
    namespaced_to_operator: bool = False  # granted by the Role in the operator's namespace
    name: str | None = None  # a resourceNames restriction
    namespace: str | None = None  # in this other namespace (kube-system)
    granted_by: str | None = None  # a role Kubernetes defines itself, which the chart binds

    def __str__(self) -> str:
        group = self.group or "core"
        where = (
            f"in namespace {self.namespace}"
            if self.namespace
            else "in the operator's namespace"
            if self.namespaced_to_operator
            else "cluster-wide"
        )
        named = f" named {self.name}" if self.name else ""
        return f"{self.verb} {self.resource}{named} ({group}, {where}): {self.why}"


_CUSTOM = models.GROUP


def required(
    *,
    webhook_configuration: str | None,
    lease: str | None,
    api_service: str | None = None,
    sharded: bool = False,
) -> list[Permission]:
    rules = [
        *(Permission(v, _CUSTOM, "videoanalyzeraccounts", "watch accounts") for v in ("list", "watch")),
        Permission("patch", _CUSTOM, "videoanalyzeraccounts/status", "report account state"),
        Permission("patch", _CUSTOM, "videoanalyzeraccounts", "annotate an account with its account ID"),
        *(Permission(v, _CUSTOM, "customerkeys", "index customer keys") for v in ("list", "watch")),
        Permission("patch", _CUSTOM, "customerkeys/status", "report what checks of a key found"),
        *(Permission(v, _CUSTOM, "keyvaults", "index key vaults") for v in ("list", "watch")),
        Permission("patch", _CUSTOM, "keyvaults/status", "report a vault's configuration"),
        *(
            Permission(v, "apiextensions.k8s.io", "customresourcedefinitions", "Kopf finds the kinds")
            for v in ("list", "watch")
        ),
        Permission("create", "", "events", "Events on state transitions"),
        *(
            Permission(v, "", "secrets", "wrapped account keys, key versions, platform keys")
            for v in ("get", "list", "watch", "create", "update")
        ),
        Permission("create", "", "serviceaccounts", "the default <account>-identity"),
        Permission("get", "", "serviceaccounts", "workload-identity annotations"),
        Permission("list", "", "serviceaccounts", "identities a new leader finds made"),
        Permission("create", "", "serviceaccounts/token", "act as an account's identity"),
        Permission(
            "list",
            "networking.k8s.io",
            "servicecidrs",
            "refuse vault addresses in the cluster's Service ranges",
        ),
    ]
    if webhook_configuration:
        rules += [
            Permission(
                v,
                "admissionregistration.k8s.io",
                "validatingwebhookconfigurations",
                "keep the webhook's caBundle current",
                name=webhook_configuration,
            )
            for v in ("get", "patch")
        ]
    if api_service:
        data = "the data API (data.videoanalyzer.io)"
        rules += [
            *(
                Permission(v, "internal.videoanalyzer.io", "sealedobjects", f"{data}: its sealed storage")
                for v in ("get", "list", "watch", "create", "update", "patch", "delete")
            ),
            Permission(
                "create",
                "authorization.k8s.io",
                "subjectaccessreviews",
                f"{data}: authorize each request",
            ),
            Permission(
                "get",
                "",
                "configmaps",
                f"{data}: the front proxy's CA",
                name="extension-apiserver-authentication",
                namespace="kube-system",
                granted_by="Role kube-system/extension-apiserver-authentication-reader",
            ),
            *(
                Permission(
                    v, "apiregistration.k8s.io", "apiservices", f"{data}: its APIService", name=api_service
                )
                for v in ("get", "patch")
            ),
        ]
    if lease:
        election = "leader election"
        rules += [
            Permission("create", "coordination.k8s.io", "leases", election, namespaced_to_operator=True),
            *(
                Permission(
                    v, "coordination.k8s.io", "leases", election, namespaced_to_operator=True, name=lease
                )
                for v in ("get", "update")
            ),
        ]
    if sharded:
        claims = "sharding: namespace claims and other releases' leader Leases"
        rules += [
            *(
                Permission(v, "", "namespaces", "sharding: the namespaces it selects")
                for v in ("list", "watch")
            ),
            *(
                Permission(v, "coordination.k8s.io", "leases", claims, namespaced_to_operator=True)
                for v in ("get", "update", "delete")
            ),
        ]
    return rules


async def missing(api: client.ApiClient, rules: list[Permission], *, namespace: str) -> list[Permission]:
    """The rules this client is not granted (SelfSubjectAccessReview, one per rule, concurrently)."""
    authorization = client.AuthorizationV1Api(api)

    async def allowed(rule: Permission) -> bool:
        resource, _, subresource = rule.resource.partition("/")
        review = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(
                    verb=rule.verb,
                    group=rule.group,
                    resource=resource,
                    subresource=subresource or None,
                    name=rule.name,
                    namespace=rule.namespace or (namespace if rule.namespaced_to_operator else None),
                )
            )
        )
        answer = await authorization.create_self_subject_access_review(review)
        return bool(answer.status.allowed)

    verdicts = await asyncio.gather(*(allowed(rule) for rule in rules))
    return [rule for rule, ok in zip(rules, verdicts, strict=True) if not ok]


class PermissionCheck:
    """Checks the rules at start, and again every 15 s while any is missing (a fixed chart or a
    ClusterRole edited by hand is noticed without a restart)."""

    def __init__(self, api: client.ApiClient, rules: list[Permission], *, namespace: str) -> None:
        self._api = api
        self._rules = rules
        self._namespace = namespace
        self._problem: str | None = "not checked yet"

    def problem(self) -> str | None:
        return self._problem

    async def run(self, period: float = 15.0) -> None:
        await retry.every(period, self._check, doing="Checking RBAC permissions", retry_after=5.0)

    async def _check(self) -> bool:
        """True once nothing is missing; what is missing is the readiness problem meanwhile."""
        try:
            lacking = await missing(self._api, self._rules, namespace=self._namespace)
        except Exception as error:
            self._problem = f"cannot check permissions: {retry.describe(error)}"
            raise
        for rule in lacking:
            logger.error("Missing RBAC permission: %s", rule)
        self._problem = (
            "missing RBAC permissions (the chart's ClusterRole and Role grant them): "
            + "; ".join(str(rule) for rule in lacking)
            if lacking
            else None
        )
        return not lacking
