"""The azureKeyVault provider against Key Vault and Entra ID exchanges written down from the Azure REST
reference (tests/fixtures/azure/exchanges.json). They were authored from the documentation, not
recorded from the real service, which cannot be reached from here.

A small TLS server on loopback serves them, so the provider runs through the real azure-keyvault-keys
and azure-identity packages (challenge, token exchange, paging by nextLink, error parsing) and these
tests check what it sends and what it makes of each answer.
"""

from __future__ import annotations

import base64
import json
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from azure.keyvault.keys._shared import http_challenge_cache

from tests import helpers
from vaop import pki
from vaop.crypto import rsa
from vaop.providers import azure, base
from vaop.providers.addresses import AddressPolicy
from vaopdev import cluster

EXCHANGES = json.loads((Path(__file__).parents[1] / "fixtures" / "azure" / "exchanges.json").read_text())
V1, V2 = EXCHANGES["versions"]
SERVICE_ACCOUNT_TOKEN = "eyJhbGciOiJSUzI1NiJ9.service-account-token.signature"


@dataclass
class Replay:
    """Serves the named exchange for each kind of request; keeps what was asked."""

    port: int
    ca_pem: str
    answers: dict[str, str] = field(default_factory=dict)
    asked: list[dict[str, Any]] = field(default_factory=list)
    resource: str = ""  # the challenge's resource; default: a parent domain of 127.0.0.1:<port>

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def answer(self, kind: str, request: web.Request, form: dict[str, str], body: str) -> web.Response:
        self.asked.append(
            {"kind": kind, "path": request.path, "query": dict(request.query), "form": form, "body": body}
        )
        if kind != "token" and not request.headers.get("Authorization", "").startswith("Bearer "):
            name = "challenge"
        elif "$skiptoken" in request.query:  # a nextLink: its token names the next page's exchange
            name = request.query["$skiptoken"]
        else:
            name = self.answers.get(kind, kind)
        written = EXCHANGES["exchanges"][name]
        text = json.dumps(written["body"])
        headers = {k: self._fill(v) for k, v in written.get("headers", {}).items()}
        return web.Response(
            status=written["status"], text=self._fill(text), headers=headers, content_type="application/json"
        )

    def _fill(self, text: str) -> str:
        return (
            text.replace("{vault}", self.url)
            .replace("{authority}", self.url)
            .replace("{tenant}", EXCHANGES["tenant"])
            .replace("{resource}", self.resource or f"https://0.0.1:{self.port}")
        )


@pytest.fixture
async def replay(tmp_path: Path) -> AsyncIterator[Replay]:
    ca = pki.make_ca("replay-ca")
    serving = pki.issue_serving(ca, dns_names=["localhost"], ip_addresses=["127.0.0.1"])
    (tmp_path / "tls.crt").write_bytes(serving.cert_pem)
    (tmp_path / "tls.key").write_bytes(serving.key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    made = Replay(cluster.free_port(), ca.cert_pem.decode())
    # The SDK keeps each host's 401 challenge for the whole process. An earlier replay server on
    # the same port number would hand its challenge to this one and skip the exchange under test.
    http_challenge_cache.clear()

    def route(kind: str) -> Any:
        async def handle(request: web.Request) -> web.Response:
            form = {k: str(v) for k, v in (await request.post()).items()} if kind == "token" else {}
            body = await request.text() if kind != "token" else ""
            return made.answer(kind, request, form, body)

        return handle

    app = web.Application()
    app.router.add_post("/{tenant}/oauth2/v2.0/token", route("token"))
    app.router.add_get("/keys/{name}/versions", route("versions"))
    app.router.add_get("/keys/{name}/{version}", route("key"))
    app.router.add_post("/keys/{name}/{version}/unwrapkey", route("unwrap"))
    async with helpers.serving(app, port=made.port, ssl_context=context):
        yield made
        await azure.close_all()


LOCAL = AddressPolicy(loopback=True)  # the replay and the stand-in listen on loopback


async def _provider(replay: Replay) -> azure.AzureKeyVaultProvider:
    identity = f"ServiceAccount tenant-a/studio-identity-{uuid.uuid4().hex[:6]}"
    connection = await azure.connection(
        vault_url=replay.url,
        tenant_id=EXCHANGES["tenant"],
        client_id="1b2c3d4e-0000-0000-0000-000000000000",
        authority=replay.url,
        ca_bundle=replay.ca_pem,
        identity=identity,
        service_account_token=SERVICE_ACCOUNT_TOKEN,
        addresses=LOCAL,
    )
    return azure.AzureKeyVaultProvider(
        connection, vault_url=replay.url, client_id="1b2c3d4e-0000-0000-0000-000000000000", identity=identity
    )


async def test_signs_in_with_the_federated_token_and_reads_versions(replay: Replay) -> None:
    provider = await _provider(replay)
    versions = await provider.versions("account-kek")
    assert [(v.version, v.facts, v.enabled) for v in versions] == [
        (V1, rsa.KeyFacts("RSA-HSM", 3072), True),
        (V2, rsa.KeyFacts("RSA-HSM", 3072), True),
    ]
    assert await provider.protection("account-kek") == base.VaultProperties(
        soft_delete=True, purge_protection=True
    )
    assert (await provider.resolve("account-kek", None)).version == V2  # versionless: the newest

    token = next(a for a in replay.asked if a["kind"] == "token")
    assert token["path"] == f"/{EXCHANGES['tenant']}/oauth2/v2.0/token"
    assert token["form"]["client_assertion"] == SERVICE_ACCOUNT_TOKEN
    assert token["form"]["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert token["form"]["grant_type"] == "client_credentials"
    assert token["form"]["scope"] == f"https://0.0.1:{replay.port}/.default"
    assert all("api-version" in a["query"] for a in replay.asked if a["kind"] != "token")


async def test_unwrap_sends_the_envelopes_algorithm_to_the_exact_version(replay: Replay) -> None:
    provider = await _provider(replay)
    ciphertext = b"\x01" * 384
    plain = await provider.unwrap("account-kek", V2, ciphertext, algorithm=rsa.RSA_OAEP_256)
    answered = EXCHANGES["exchanges"]["unwrap"]["body"]["value"]
    assert plain == base64.urlsafe_b64decode(answered + "=" * (-len(answered) % 4))
    sent = [a for a in replay.asked if a["kind"] == "unwrap" and a["body"]][-1]
    assert sent["path"] == f"/keys/account-kek/{V2}/unwrapkey"
    body = json.loads(sent["body"])
    assert body["alg"] == "RSA-OAEP-256"
    assert base64.urlsafe_b64decode(body["value"] + "=" * (-len(body["value"]) % 4)) == ciphertext


async def test_wrap_uses_the_versions_public_key_with_oaep_sha256(replay: Replay) -> None:
    provider = await _provider(replay)
    key = await provider.resolve("account-kek", None)
    wrapped = await provider.wrap(key, b"k" * 32)
    assert (wrapped.algorithm, wrapped.version, len(wrapped.ciphertext)) == (rsa.RSA_OAEP_256, V2, 384)


async def test_versions_listed_over_several_pages_are_all_read(replay: Replay) -> None:
    """Key Vault pages a key's versions (at most 25 a page) and links the next page: the newest
    version, on the last page, is the one a versionless key follows."""
    replay.answers["versions"] = "versions_page_1"
    provider = await _provider(replay)
    assert [v.version for v in await provider.versions("account-kek")] == [V1, V2]
    assert (await provider.resolve("account-kek", None)).version == V2
    pages = [a["query"].get("$skiptoken") for a in replay.asked if a["kind"] == "versions" and a["query"]]
    assert pages[-2:] == [None, "versions_page_2"]


async def test_a_key_whose_key_ops_leave_out_wrapping_is_unsupported_with_what_to_do(replay: Replay) -> None:
    replay.answers["key"] = "key_sign_only"
    provider = await _provider(replay)
    with pytest.raises(base.KeyUnsupported) as refused:
        await provider.resolve("account-kek", None)
    assert "leave out wrapKey and unwrapKey" in str(refused.value)
    assert "az keyvault key set-attributes --ops wrapKey unwrapKey" in str(refused.value)


@pytest.mark.parametrize(
    ("exchange", "protection"),
    [("versions", (True, True)), ("versions_purgeable", (True, False))],
)
async def test_recovery_level_gives_soft_delete_and_purge_protection(
    replay: Replay, exchange: str, protection: tuple[bool, bool]
) -> None:
    replay.answers["versions"] = exchange
    properties = await (await _provider(replay)).protection("account-kek")
    assert (properties.soft_delete, properties.purge_protection) == protection


async def test_an_expired_version_still_opens_and_says_its_date(replay: Replay) -> None:
    """As Key Vault does: past its expiry a version unwraps (only wrap stops), so it stays enabled,
    marked expired; the operator wraps nothing new with it (tests/integration/test_key_expiry.py)."""
    replay.answers["versions"] = "versions_expired"
    version = await (await _provider(replay)).resolve("account-kek", None)
    assert version.enabled and version.expired()
    assert version.expiry() == "2025-11-29 08:06 UTC"


@pytest.mark.parametrize(
    ("kind", "exchange", "error", "says"),
    [
        ("versions", "versions_forbidden", base.AccessDenied, "Key Vault Crypto Service Encryption User"),
        ("versions", "versions_not_found", base.KeyNotFound, "does not exist"),
        ("versions", "versions_throttled", base.TransientError, "429"),
        ("token", "token_no_federated_credential", base.AccessDenied, "AADSTS70021"),
        ("unwrap", "unwrap_disabled", base.KeyDisabled, "enable it"),
    ],
)
async def test_vault_answers_become_reasons(
    replay: Replay, kind: str, exchange: str, error: type[base.ProviderError], says: str
) -> None:
    replay.answers[kind] = exchange
    provider = await _provider(replay)
    with pytest.raises(error, match=says) as raised:
        if kind == "unwrap":
            await provider.unwrap("account-kek", V2, b"\x01" * 384, algorithm=rsa.RSA_OAEP_256)
        else:
            await provider.versions("account-kek")
    assert SERVICE_ACCOUNT_TOKEN not in str(raised.value)


async def test_url_that_is_not_the_vaults_own_is_refused(replay: Replay) -> None:
    """The 401 challenge names the resource the vault belongs to; the SDK refuses to sign in for
    another one (so a mistyped or hostile vaultURL never receives a vault token)."""
    replay.resource = "https://vault.azure.net"
    with pytest.raises(base.VaultNotFound, match="did not answer as an Azure Key Vault"):
        await (await _provider(replay)).versions("account-kek")
    assert not [a for a in replay.asked if a["kind"] == "token"]


async def test_unreachable_vault_is_transient(replay: Replay) -> None:
    closed = f"https://127.0.0.1:{cluster.free_port()}"
    connection = await azure.connection(
        vault_url=closed,
        tenant_id=EXCHANGES["tenant"],
        client_id="1b2c3d4e-0000-0000-0000-000000000000",
        authority=closed,
        ca_bundle=replay.ca_pem,
        identity="ServiceAccount tenant-a/unreachable",
        service_account_token=SERVICE_ACCOUNT_TOKEN,
        addresses=LOCAL,
    )
    provider = azure.AzureKeyVaultProvider(connection, vault_url=closed, client_id="x", identity="y")
    with pytest.raises(base.TransientError, match="did not answer"):
        await provider.versions("account-kek")
