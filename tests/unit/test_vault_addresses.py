"""Which addresses tenants' vaults may be at: the URL checks, and the check of what a name resolves to
(a real resolver and a real server: a refused name is never connected to)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from tests import helpers
from vaop import models, providers
from vaop.providers import addresses, base
from vaop.providers.addresses import AddressPolicy

CLUSTER = ("10.96.0.0/12", "10.244.0.0/16")
DEFAULT = AddressPolicy(refused=CLUSTER)
AZURE_ONLY = AddressPolicy(allowed=(".vault.azure.net", "login.microsoftonline.com"), refused=CLUSTER)
IN_CLUSTER_VAULT = AddressPolicy(
    allowed=("openbao.vault.svc", ".example.com", "192.0.2.0/24"), refused=CLUSTER
)


def _refused(policy: AddressPolicy, url: str) -> str | None:
    return policy.check_url(url, field_path="spec.provider.openbao.address")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://169.254.169.254/latest/meta-data", "link-local or metadata"),
        ("http://[fd00:ec2::254]/", "link-local or metadata"),
        ("http://[::ffff:169.254.169.254]/", "link-local or metadata"),
        ("http://100.100.100.200/", "link-local or metadata"),
        ("https://10.96.0.1:443", "in the cluster's range 10.96.0.0/12"),  # the apiserver's Service
        ("http://10.244.1.7:8200", "in the cluster's range 10.244.0.0/16"),  # a Pod
        ("https://kubernetes.default.svc", "a name inside the cluster"),
        ("http://openbao.other-tenant.svc.cluster.local:8200", "a name inside the cluster"),
        ("http://openbao:8200", "a name inside the cluster"),  # found through the search path
        ("http://metadata.google.internal/", "a name inside the cluster"),
        ("http://127.0.0.1:8200", "a loopback address"),
        ("http://localhost:8200", "a name inside the cluster"),
        ("http://0.0.0.0:8200", "not an address a vault can be at"),
    ],
)
def test_the_default_refuses_metadata_loopback_and_the_cluster(url: str, why: str) -> None:
    refused = _refused(DEFAULT, url)
    assert refused is not None and why in refused
    assert "chart value vaultAddresses.allowed" in refused
    assert "10.96.0.0/12, 10.244.0.0/16" in refused  # says what the platform allows


@pytest.mark.parametrize(
    "url", ["https://vault.tenant-a.example:8200", "https://203.0.113.9", "https://[2001:db8::1]"]
)
def test_the_default_allows_addresses_outside_the_cluster(url: str) -> None:
    assert _refused(DEFAULT, url) is None


def test_an_allowlist_allows_only_what_it_names() -> None:
    assert AZURE_ONLY.check_url("https://contoso.vault.azure.net/", field_path="f") is None
    assert AZURE_ONLY.check_url("https://login.microsoftonline.com", field_path="f") is None
    refused = AZURE_ONLY.check_url("https://vault.azure.net.evil.example/", field_path="f")
    assert refused is not None and "is not a host the platform allows" in refused
    assert ".vault.azure.net, login.microsoftonline.com" in refused
    refused = AZURE_ONLY.check_url("https://203.0.113.9/", field_path="f")
    assert refused is not None and "not in a range the platform allows" in refused


def test_a_host_named_by_the_platform_may_be_in_the_cluster_and_a_suffix_may_not() -> None:
    assert IN_CLUSTER_VAULT.check_url("http://openbao.vault.svc:8200", field_path="f") is None
    assert IN_CLUSTER_VAULT.check_resolved("openbao.vault.svc", ["10.96.4.4"]) is None
    refused = IN_CLUSTER_VAULT.check_resolved("vault.example.com", ["10.96.0.1"])
    assert refused is not None and "resolves to 10.96.0.1, in the cluster's range 10.96.0.0/12" in refused
    assert IN_CLUSTER_VAULT.check_resolved("vault.example.com", ["203.0.113.9"]) is None
    # Named or not, metadata stays refused; one refused address among several refuses the name.
    assert IN_CLUSTER_VAULT.check_resolved("openbao.vault.svc", ["169.254.169.254"]) is not None
    assert IN_CLUSTER_VAULT.check_resolved("vault.example.com", ["203.0.113.9", "127.0.0.1"]) is not None
    assert IN_CLUSTER_VAULT.check_url("http://192.0.2.7:8200", field_path="f") is None


def test_the_local_mode_allows_loopback_only() -> None:
    local = AddressPolicy(refused=CLUSTER, loopback=True)
    assert local.check_url("http://127.0.0.1:8200", field_path="f") is None
    assert local.check_url("https://localhost:8443", field_path="f") is None
    assert local.check_url("http://169.254.169.254", field_path="f") is not None
    assert local.check_url("https://kubernetes.default.svc", field_path="f") is not None


def test_a_url_without_a_host_says_how_to_write_it() -> None:
    assert "names no host; write it as https://<host>[:<port>]" in (_refused(DEFAULT, "openbao:8200") or "")


def test_a_bad_cidr_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match=r"10\.0\.0\.0/33"):
        AddressPolicy(refused=("10.0.0.0/33",))


def test_foreign_text_is_short_and_printable() -> None:
    assert base.foreign("permission denied\n\x1b[31m<script>") == "permission denied [31m<script>"
    long = base.foreign("x" * 5000)
    assert len(long) == 120 and long.endswith("…")
    assert base.foreign("") == "no detail"


@pytest.fixture
async def loopback_server() -> AsyncIterator[tuple[int, list[str]]]:
    hits: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text="{}")

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    async with helpers.serving(app) as port:
        yield port, hits


async def test_a_name_resolving_into_a_refused_range_is_never_connected_to(
    loopback_server: tuple[int, list[str]],
) -> None:
    """`localhost` passes a policy that lets names through by suffix, resolves (for real) to 127.0.0.1,
    and is refused before any connection; the same server is reached where loopback is allowed."""
    port, hits = loopback_server
    policy = AddressPolicy(allowed=(".localhost", "localhost"), refused=CLUSTER)
    assert policy.check_url(f"http://localhost:{port}", field_path="f") is None  # the URL passes
    async with aiohttp.ClientSession(connector=addresses.connector(policy)) as session:
        with pytest.raises(addresses.AddressRefused, match=r"localhost resolves to 127\.0\.0\.1, a loopback"):
            await session.get(f"http://localhost:{port}/v1/sys/health")
    assert hits == []
    allowed = AddressPolicy(refused=CLUSTER, loopback=True)
    async with (
        aiohttp.ClientSession(connector=addresses.connector(allowed)) as session,
        session.get(f"http://localhost:{port}/v1/sys/health") as response,
    ):
        assert response.status == 200
    assert hits == ["/v1/sys/health"]


async def test_a_probe_that_cannot_even_start_says_why_instead_of_failing() -> None:
    spec = models.KeyVaultSpec.parse(
        {
            "region": "westeurope",
            "provider": {
                "openbao": {"address": "https://vault.example.test", "role": "r", "caBundle": "no pem"}
            },
        }
    )
    refused = await providers.probe(spec)
    assert refused is not None and refused.reason == "ProviderUnavailable"
    assert "cannot be reached as configured (SSLError" in refused.message
