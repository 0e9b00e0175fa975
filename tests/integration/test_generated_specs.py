"""Generated specs for the three kinds, through the real apiserver, webhook and operator.

What the CRD refuses comes back as a 4xx Status naming the field; what passes is never a crash: each
object gets a Ready condition with a documented reason, and the operator logs no traceback. Every
address drawn is on loopback, so nothing applied here makes the operator reach off this machine.
"""

from __future__ import annotations

import copy
import functools
import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client

from tests import helpers
from tests.integration.conftest import OperatorProcess
from vaop import conditions
from vaopdev import environment

pytestmark = pytest.mark.usefixtures("operator")

REASONS = {v for k, v in vars(conditions.Reason).items() if k.isupper()}
# A small pool, so that references sometimes resolve and sometimes do not.
NAMES = st.sampled_from(["k1", "k2", "v1", "v2", "missing"])
JUNK = st.one_of(
    st.text(max_size=12),
    st.integers(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.just("a" * 254),
    st.just("Upper.Case"),
    st.just({"namespace": "elsewhere"}),
)
LOOPBACK = st.sampled_from(["http://127.0.0.1:9", "https://127.0.0.1:9", "https://127.0.0.1:9/"])
# Never edited: a dropped authorityHost defaults to Microsoft's, off this machine.
ADDRESSES = {"address", "vaultURL", "authorityHost"}
REGION = st.sampled_from(["westeurope", "eastus"])


def _some(required: dict[str, Any], **optional: Any) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(required, optional=optional)


IDENTITY = _some({"serviceAccountName": NAMES})
ACCOUNT = _some(
    {
        "region": REGION,
        "encryption": st.one_of(
            st.just({"type": "SystemKey"}),
            _some({"type": st.just("CustomerKey"), "keyRef": _some({"name": NAMES})}, identity=IDENTITY),
        ),
    }
)
CUSTOMER_KEY = _some(
    {"vaultRef": _some({"name": NAMES}), "keyName": st.sampled_from(["kek", "kek2"])},
    keyVersion=st.sampled_from(["", "1", "2"]),
    identity=IDENTITY,
)
PROVIDER = st.one_of(
    _some({}, softDelete=st.booleans(), purgeProtection=st.booleans()).map(lambda b: {"kubernetes": b}),
    _some({"address": LOOPBACK, "role": NAMES}, transitMount=NAMES).map(lambda b: {"openbao": b}),
    _some(
        {
            "module": st.sampled_from([environment.SOFTHSM_MODULE, "/nonexistent/lib.so"]),
            "tokenLabel": st.sampled_from(["tenant", "absent"]),
            "pinSecretRef": _some({"name": NAMES, "key": NAMES}),
        }
    ).map(lambda b: {"pkcs11": b}),
    _some(
        {"vaultURL": LOOPBACK, "authorityHost": LOOPBACK},
        tenantID=st.uuids().map(str),
        clientID=st.uuids().map(str),
    ).map(lambda b: {"azureKeyVault": b}),
)
KEY_VAULT = _some({"region": REGION, "provider": PROVIDER})


def _fields(spec: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for key, value in spec.items():
        if key not in ADDRESSES:
            found.append((*path, key))
        if isinstance(value, dict):
            found += _fields(value, (*path, key))
    return found


@st.composite
def _edited(draw: st.DrawFn, valid: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """A valid spec, then up to two edits: a field dropped, set to junk, or an unknown one added."""
    # Copies: st.just() hands out one object to every example, and editing it in place would make
    # later examples (and the spec itself, once junk holds a part of it) grow without end.
    spec = copy.deepcopy(draw(valid))
    for _ in range(draw(st.integers(0, 2))):
        path = draw(st.sampled_from(_fields(spec)))
        parent = functools.reduce(lambda node, key: node[key], path[:-1], spec)
        edit = draw(st.sampled_from(["drop", "junk", "unknown"]))
        if edit == "drop":
            del parent[path[-1]]
        elif edit == "junk":
            parent[path[-1]] = copy.deepcopy(draw(JUNK))
        else:
            parent["surprise"] = copy.deepcopy(draw(JUNK))
        if not _fields(spec):
            break
    return spec


OBJECTS = st.lists(
    st.one_of(
        st.tuples(st.just("VideoAnalyzerAccount"), _edited(ACCOUNT)),
        st.tuples(st.just("CustomerKey"), _edited(CUSTOMER_KEY)),
        st.tuples(st.just("KeyVault"), _edited(KEY_VAULT)),
    ),
    min_size=12,
    max_size=12,
)


def _create(admin: client.ApiClient, namespace: str, kind: str, name: str, spec: Any) -> bool:
    """True when the apiserver stored it; a refusal must be a Status that says what is wrong."""
    body = {"apiVersion": "videoanalyzer.io/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec}
    try:
        helpers.custom(admin).create_namespaced_custom_object(
            "videoanalyzer.io", "v1alpha1", namespace, helpers.PLURALS[kind], body, field_validation="Strict"
        )
    except client.ApiException as error:
        assert 400 <= error.status < 500, error.body
        status = json.loads(error.body)
        assert status["kind"] == "Status", error.body
        # The CRD names the field (spec.x / unknown field "spec.x"); the webhook names the reason.
        assert "spec" in status["message"] or "(" in status["message"], status["message"]
        return False
    return True


def _settled(admin: client.ApiClient, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    found = helpers.get(admin, namespace, kind, name)
    ready = helpers.condition(found, "Ready")
    generation = found["metadata"]["generation"]
    if ready and ready["reason"] and found["status"].get("observedGeneration") == generation:
        return ready
    return None


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(objects=OBJECTS)
def test_generated_specs_are_refused_clearly_or_get_a_condition(
    admin: client.ApiClient, operator: OperatorProcess, objects: list[tuple[str, Any]]
) -> None:
    namespace = f"gen-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(admin)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    log_before = len(operator.log())
    try:
        pool = iter(["k1", "k2", "v1", "v2"] + [f"x{i}" for i in range(len(objects))])
        stored: list[tuple[str, str]] = []
        for kind, spec in objects:
            name = next(pool) if kind != "VideoAnalyzerAccount" else f"a{len(stored)}-{uuid.uuid4().hex[:4]}"
            if _create(admin, namespace, kind, name, spec):
                stored.append((kind, name))
        for kind, name in stored:
            ready = helpers.eventually(functools.partial(_settled, admin, namespace, kind, name), timeout=30)
            assert ready["reason"] in REASONS, (kind, name, ready)
            assert ready["message"], (kind, name, ready)
        assert operator.alive()
        new_log = operator.log()[log_before:]
        assert "Traceback" not in new_log, new_log[new_log.index("Traceback") - 2000 :][:6000]
    finally:
        core.delete_namespace(namespace)
