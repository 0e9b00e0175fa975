"""Which network addresses tenants' vaults may be at: the operator connects from inside the cluster's
network to whatever a KeyVault names, so an unchecked address is a server-side request forgery path
(the cloud metadata service, the apiserver, another tenant's Service).

The policy is the platform team's (chart value ``vaultAddresses``). An address is checked twice: the
URL when a KeyVault is admitted or used (names and IP literals), and every address a name resolves
to when the operator connects (a name that resolves into a refused range is refused, so DNS cannot
smuggle a refused address past the first check). Refused, always, unless an allowed CIDR covers it:
link-local (and so cloud metadata) and unspecified addresses; loopback outside the local mode; the
cluster's Service and Pod ranges. A name the platform allows by its exact name may resolve into the
cluster's ranges (an in-cluster vault the platform runs); a name allowed by its suffix may not.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from .. import conditions
from . import base

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Metadata services outside link-local (AWS' IPv6 one, Alibaba's).
_METADATA = (ipaddress.ip_network("fd00:ec2::254/128"), ipaddress.ip_network("100.100.100.200/32"))
# Names that only mean something inside the cluster or on the operator's host.
_INTERNAL_SUFFIXES = (".svc", ".cluster.local", ".internal", ".localhost")
CHART_VALUE = "vaultAddresses.allowed"


class AddressRefused(base.DefinitiveError):
    reason = conditions.Reason.VAULT_ADDRESS_REFUSED


def _networks(entries: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


@dataclass(frozen=True)
class AddressPolicy:
    """``allowed``: host names (``vault.example.com``), suffixes (``.vault.azure.net``) and CIDRs; empty
    allows any address not refused. ``refused``: the cluster's Service and Pod ranges (CIDRs).
    ``loopback``: the local mode, where the operator and its vaults run on one machine."""

    allowed: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()
    loopback: bool = False
    _allowed_networks: tuple[Network, ...] = field(init=False, repr=False, compare=False)
    _refused_networks: tuple[Network, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Bad entries fail here, at start-up, with ipaddress' own message naming the entry.
        cidrs = [entry for entry in self.allowed if _is_cidr(entry)]
        object.__setattr__(self, "_allowed_networks", _networks(cidrs))
        object.__setattr__(self, "_refused_networks", _networks(self.refused))

    @property
    def _names(self) -> frozenset[str]:
        return frozenset(
            e.lower().rstrip(".") for e in self.allowed if not _is_cidr(e) and not e.startswith(".")
        )

    @property
    def _suffixes(self) -> tuple[str, ...]:
        return tuple(e.lower().rstrip(".") for e in self.allowed if e.startswith("."))

    def describe(self) -> str:
        """What the platform allows, for messages."""
        if not self.allowed:
            refused = ", ".join(self.refused) or "none given"
            loopback = "" if self.loopback else ", loopback"
            return (
                f"any address except link-local and metadata addresses{loopback} and the cluster's "
                f"Service and Pod ranges ({refused})"
            )
        return ", ".join(self.allowed)

    def check_url(self, url: str, *, field_path: str) -> str | None:
        """Why a vault at ``url`` (the KeyVault's ``field_path``) is refused, or None."""
        try:
            host = urlsplit(url).hostname
        except ValueError as error:
            return f"{field_path} {url!r} is not a URL ({error})"
        if not host:
            return f"{field_path} {url!r} names no host; write it as https://<host>[:<port>]"
        problem = self._host_problem(host.lower().rstrip("."))
        return None if problem is None else self._message(field_path, url, problem)

    def check_resolved(self, host: str, addresses: Iterable[str]) -> str | None:
        """Why a connection to ``host``, resolved to ``addresses``, is refused, or None."""
        named = host.lower().rstrip(".") in self._names
        for text in addresses:
            address = ipaddress.ip_address(text.split("%")[0])
            problem = self._address_problem(address, named=named, literal=False)
            if problem is not None:
                return (
                    f"vault host {host} resolves to {text}, {problem}; vaults may be at "
                    f"{self.describe()} (chart value {CHART_VALUE})"
                )
        return None

    def _message(self, field_path: str, url: str, problem: str) -> str:
        return (
            f"{field_path} {url}: {problem}. The platform allows vaults at {self.describe()}; use such an "
            f"address, or ask the platform team to allow this one (chart value {CHART_VALUE})"
        )

    def _host_problem(self, host: str) -> str | None:
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return self._name_problem(host)
        return self._address_problem(address, named=False, literal=True)

    def _name_problem(self, host: str) -> str | None:
        if host in self._names or any(host.endswith(suffix) for suffix in self._suffixes):
            return None
        if self.allowed:
            return f"{host} is not a host the platform allows"
        if self.loopback and (host == "localhost" or host.endswith(".localhost")):
            return None
        if "." not in host or host == "localhost" or host.endswith(_INTERNAL_SUFFIXES):
            return f"{host} is a name inside the cluster or the operator's host, which vaults may not be at"
        return None  # its addresses are checked when it is resolved

    def _address_problem(self, address: Address, *, named: bool, literal: bool) -> str | None:
        """``named``: the host was allowed by its exact name; ``literal``: the URL gave the address."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:169.254.169.254 is 169.254.169.254
        if any(address in network for network in self._allowed_networks):
            return None
        problem = _never(address, loopback=self.loopback)
        if problem is not None or named:
            return problem  # a host the platform named may be an in-cluster vault
        refused = next((network for network in self._refused_networks if address in network), None)
        if refused is not None:
            return f"in the cluster's range {refused}"
        return f"{address} is not in a range the platform allows" if literal and self.allowed else None


def _never(address: Address, *, loopback: bool) -> str | None:
    """Addresses no vault may be at, whatever its name, unless an allowed CIDR covers them."""
    if address.is_link_local or any(address in network for network in _METADATA):
        return "a link-local or metadata address"
    if address.is_unspecified or address.is_multicast:
        return "not an address a vault can be at"
    if address.is_loopback and not loopback:
        return "a loopback address (the operator's own host)"
    return None


def _is_cidr(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True


class CheckingResolver(AbstractResolver):
    """aiohttp's resolver, refusing a name that resolves into an address the policy refuses (all of
    the name's addresses are checked: one refused address refuses the name)."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._resolver = aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        refused = self._policy.check_resolved(host, [entry["host"] for entry in found])
        if refused is not None:
            raise AddressRefused(refused)
        return found

    async def close(self) -> None:
        await self._resolver.close()


def connector(policy: AddressPolicy | None, *, tls: ssl.SSLContext | bool = True) -> aiohttp.TCPConnector:
    """A connector that resolves through the policy (None: any address, for break glass run by a person)."""
    if policy is None:
        return aiohttp.TCPConnector(ssl=tls)
    return aiohttp.TCPConnector(resolver=CheckingResolver(policy), ssl=tls)
