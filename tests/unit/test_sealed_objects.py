"""A sealed data object opens only intact, under its own name, namespace, object ID and account ID."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.integration import legacy
from vaop.crypto import envelope, objects, rsa
from vaop.dataapi import cache, codec, keys, kinds, sealing, storage

KEY = os.urandom(32)
BINDING = objects.Binding("data.videoanalyzer.io", "Video", "tenant-a", "lobby", "object-1", "account-id-1")
DOCUMENT = b'{"spec": {"title": "Lobby camera"}}'


def test_round_trip_and_no_plaintext_in_the_ciphertext() -> None:
    sealed = objects.seal(DOCUMENT, account_key=KEY, binding=BINDING)
    assert b"Lobby" not in sealed.ciphertext
    assert objects.unseal(sealed, account_key=KEY, binding=BINDING) == DOCUMENT


@settings(max_examples=50, deadline=None)
@given(
    key=st.binary(min_size=32, max_size=32), object_id=st.text(max_size=80), version=st.sampled_from([1, 2])
)
def test_object_keys_are_rfc5869_hkdf_as_cryptography_derives_them(
    key: bytes, object_id: str, version: int
) -> None:
    """The spelled-out HKDF gives the bytes cryptography's gives: objects sealed before it open."""
    info = objects._INFO[version] + object_id.encode()
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)
    assert objects.ObjectKeys(key).object_key(version, object_id) == expected


def test_object_keys_made_once_seal_and_open_as_the_account_key_does() -> None:
    """The data API opens with ObjectKeys made once per account key: the same objects as the bytes."""
    prepared = objects.ObjectKeys(KEY)
    sealed = objects.seal(DOCUMENT, account_key=prepared, binding=BINDING)
    assert objects.unseal(sealed, account_key=KEY, binding=BINDING) == DOCUMENT
    again = objects.seal(DOCUMENT, account_key=KEY, binding=BINDING)
    assert objects.unseal(again, account_key=prepared, binding=BINDING) == DOCUMENT
    with pytest.raises(objects.SealError):
        objects.unseal(sealed, account_key=objects.ObjectKeys(os.urandom(32)), binding=BINDING)


def test_an_object_sealed_with_cryptographys_hkdf_opens() -> None:
    """An object sealed by the operator before the change (its key derived by cryptography) opens."""
    info = objects._INFO[objects.FORMAT_VERSION] + BINDING.object_id.encode()
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(KEY)
    nonce = os.urandom(12)
    aad = objects._associated_data(objects.FORMAT_VERSION, BINDING)
    sealed = objects.Sealed(objects.FORMAT_VERSION, nonce, AESGCM(key).encrypt(nonce, DOCUMENT, aad))
    assert objects.unseal(sealed, account_key=KEY, binding=BINDING) == DOCUMENT


@settings(max_examples=300)
@given(
    name=st.text(st.characters(max_codepoint=127)) | st.text(),
    version=st.sampled_from([objects.LEGACY_VERSION, objects.FORMAT_VERSION]),
)
def test_the_associated_data_is_the_bytes_json_writes(version: int, name: str) -> None:
    """orjson writes the associated data when every field is printable ASCII: the bytes must be
    json.dumps's, which sealed every object before, or those objects no longer open."""
    binding = dataclasses.replace(BINDING, name=name, namespace=name)
    fields = dict(zip(("group", "kind", "namespace", "name"), dataclasses.astuple(binding)[:4], strict=True))
    ids = (
        {"uid": binding.object_id, "account_uid": binding.account_id}
        if version == objects.LEGACY_VERSION
        else {"objectID": binding.object_id, "accountID": binding.account_id}
    )
    expected = json.dumps({**fields, **ids, "v": version}, sort_keys=True, separators=(",", ":")).encode()
    assert objects._associated_data(version, binding) == expected


@pytest.mark.parametrize("field", ["group", "kind", "namespace", "name", "object_id", "account_id"])
def test_a_moved_object_does_not_open(field: str) -> None:
    sealed = objects.seal(DOCUMENT, account_key=KEY, binding=BINDING)
    moved = dataclasses.replace(BINDING, **{field: "other"})
    with pytest.raises(objects.SealError, match="does not open"):
        objects.unseal(sealed, account_key=KEY, binding=moved)


def test_another_account_key_does_not_open_it() -> None:
    sealed = objects.seal(DOCUMENT, account_key=KEY, binding=BINDING)
    with pytest.raises(objects.SealError):
        objects.unseal(sealed, account_key=os.urandom(32), binding=BINDING)


def test_an_unknown_format_version_is_refused_not_guessed() -> None:
    sealed = dataclasses.replace(objects.seal(DOCUMENT, account_key=KEY, binding=BINDING), version=3)
    with pytest.raises(objects.SealError, match="format version 3"):
        objects.unseal(sealed, account_key=KEY, binding=BINDING)


@settings(max_examples=100, deadline=None)
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_is_refused(position: int, bit: int) -> None:
    sealed = objects.seal(DOCUMENT, account_key=KEY, binding=BINDING)
    data = bytearray(sealed.nonce + sealed.ciphertext)
    data[position % len(data)] ^= 1 << bit
    tampered = objects.Sealed(sealed.version, bytes(data[:12]), bytes(data[12:]))
    with pytest.raises(objects.SealError):
        objects.unseal(tampered, account_key=KEY, binding=BINDING)


# ---- format 1, as the data API wrote it before account IDs (recorded, tests/fixtures/formats) ----

V1 = json.loads((Path(__file__).parents[1] / "fixtures" / "formats" / "v1.json").read_text())


def _v1_account_key() -> bytes:
    sealed = envelope.decode(V1["envelope"].encode())
    account = envelope.AccountIdentity(
        V1["account"]["namespace"], V1["account"]["name"], V1["account"]["uid"]
    )
    inner = envelope.unseal(sealed, account=account, outer_key=base64.b64decode(V1["infrastructureKey"]))
    private = rsa.load_private_key(V1["systemKeyPem"].encode())
    assert isinstance(private, rsa_keys.RSAPrivateKey)
    return rsa.unwrap(private, inner, algorithm=sealed.inner.algorithm)


def _v1_record() -> dict[str, Any]:
    """The SealedObject the data API stored for the recorded Video, as it stored it then."""
    video = V1["video"]
    spec = {
        "group": "data.videoanalyzer.io",
        "kind": "Video",
        "name": video["object"]["metadata"]["name"],
        "uid": video["uid"],
        "accountName": V1["account"]["name"],
        "accountUID": V1["account"]["uid"],
        "generation": 1,
        **video["sealed"],
    }
    metadata = {"name": "video.lobby", "namespace": V1["account"]["namespace"], "resourceVersion": "7"}
    return {
        "apiVersion": "internal.videoanalyzer.io/v1alpha1",
        "kind": "SealedObject",
        "metadata": metadata,
        "spec": spec,
    }


def test_a_format_1_object_opens_bound_to_its_accounts_uid_as_account_id() -> None:
    record = _v1_record()
    assert codec.bound_account_id(record) == V1["account"]["uid"]
    opened = codec.open_record(record, account_key=_v1_account_key())
    assert opened["spec"] == V1["video"]["object"]["spec"]
    assert opened["metadata"]["labels"] == {"camera": "front"}
    assert opened["metadata"]["uid"] == V1["video"]["uid"]


def test_a_format_1_object_is_resealed_as_format_2_with_the_same_content() -> None:
    key = _v1_account_key()
    moved = codec.resealed(_v1_record(), account_key=key)
    assert moved["spec"]["format"] == 2
    assert moved["spec"]["accountID"] == V1["account"]["uid"] and "accountUID" not in moved["spec"]
    assert moved["spec"]["namespace"] == "tenant-a"
    assert moved["metadata"] == _v1_record()["metadata"]  # conditional on the same resourceVersion
    assert codec.open_record(moved, account_key=key)["spec"] == V1["video"]["object"]["spec"]
    with pytest.raises(objects.SealError):  # format 2 binds the account ID: it does not open for another
        codec.open_record({**moved, "spec": {**moved["spec"], "accountID": "another"}}, account_key=key)


def _keys_of(document: Any) -> Any:
    """The shape of a JSON document: its keys, nested, without the values."""
    if isinstance(document, dict):
        return {key: _keys_of(value) for key, value in document.items()}
    return None


def test_the_upgrade_tests_write_format_1_as_the_old_operator_did() -> None:
    """tests/integration/legacy.py stands in for the old operator: what it writes has the recorded
    vectors' shape and opens with the same keys, through the same reader."""
    recorded = json.loads(V1["envelope"])
    sealed = envelope.decode(V1["envelope"].encode())
    account = envelope.AccountIdentity(
        V1["account"]["namespace"], V1["account"]["name"], V1["account"]["uid"]
    )
    outer = base64.b64decode(V1["infrastructureKey"])
    rewritten = legacy.seal_envelope(
        envelope.unseal(sealed, account=account, outer_key=outer),
        uid=account.id,
        namespace=account.namespace,
        name=account.name,
        inner=recorded["inner"],
        outer_key=outer,
    )
    assert _keys_of(json.loads(rewritten)) == _keys_of(recorded)
    assert envelope.unseal(envelope.decode(rewritten), account=account, outer_key=outer)
    key = _v1_account_key()
    video = V1["video"]
    content = {"metadata": {"labels": video["object"]["metadata"]["labels"]}, "spec": video["object"]["spec"]}
    record = _v1_record()
    record["spec"].update(
        legacy.seal_object(
            content,
            account_key=key,
            kind="Video",
            namespace="tenant-a",
            name="lobby",
            uid=video["uid"],
            account_uid=account.id,
        )
    )
    assert codec.open_record(record, account_key=key)["spec"] == video["object"]["spec"]


class _HeldKey:
    """AccountKeys as Sealing asks it: the held key, or Unavailable once the account is locked."""

    def __init__(self, opened: keys.Opened) -> None:
        self.opened: keys.Opened | None = opened

    async def key(self, namespace: str, name: str) -> keys.Opened:
        if self.opened is None:
            raise keys.Unavailable("KeyInaccessible", "the account's key is not accessible")
        return self.opened


def _stored_video(opened: keys.Opened, *, title: str, resource_version: str) -> dict[str, Any]:
    video = kinds.KINDS["videos"]
    obj = {"metadata": {"name": "lobby", "labels": {"camera": "1"}}, "spec": {"title": title}}
    sealed = codec.seal(
        obj, kind=video, namespace="tenant-a", object_id="object-1", account_id="id-1", account_key=opened.key
    )
    record = storage.record_for(
        video,
        namespace="tenant-a",
        name="lobby",
        object_id="object-1",
        account_name="studio",
        account_id="id-1",
        account_uid="uid-1",
        generation=1,
        sealed=sealed,
        resource_version=resource_version,
    )
    record["metadata"]["uid"] = "the-sealed-objects-own-uid"
    return cache._kept(record)  # as lists and watches meet it: the cache's copy


async def test_an_object_is_opened_once_per_version_while_its_key_is_held_and_never_without_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reading an unchanged object again (a list, each of many watchers) skips the AES-GCM; a new
    version is opened anew; a locked account's objects come back withheld, and the next key held
    for it opens them again rather than reuse what the old key opened."""
    opens: list[str] = []
    unsealed = codec.unsealed

    def counted(record: dict[str, Any], *, account_key: Any) -> bytes:
        opens.append(record["metadata"]["resourceVersion"])
        return unsealed(record, account_key=account_key)

    monkeypatch.setattr(codec, "unsealed", counted)
    opened = keys.Opened("id-1", "uid-1", objects.ObjectKeys(KEY))
    held = _HeldKey(opened)
    reader = sealing.Sealing(held)  # type: ignore[arg-type]
    first = _stored_video(opened, title="Lobby camera", resource_version="7")

    seen = [await reader.open(first) for _ in range(3)]
    assert opens == ["7"]
    assert [obj["spec"]["title"] for obj in seen] == ["Lobby camera"] * 3
    seen[0]["spec"]["title"] = "changed by a caller"  # each read is a document of its own
    assert (await reader.open(first))["spec"]["title"] == "Lobby camera"

    updated = _stored_video(opened, title="Lobby camera, moved", resource_version="8")
    assert (await reader.open(updated))["spec"]["title"] == "Lobby camera, moved"
    assert opens == ["7", "8"]

    held.opened = None  # the account locked: its key is dropped
    withheld = await reader.open(updated)
    assert "spec" not in withheld and withheld["status"]["conditions"][0]["reason"] == "KeyInaccessible"

    held.opened = keys.Opened("id-1", "uid-1", objects.ObjectKeys(KEY))  # access back: unwrapped anew
    assert (await reader.open(updated))["spec"]["title"] == "Lobby camera, moved"
    assert opens == ["7", "8", "8"]
