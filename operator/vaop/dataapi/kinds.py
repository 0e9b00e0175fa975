"""AccessPolicy and Video: their specs (the one source of their OpenAPI schema), names and columns."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "data.videoanalyzer.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class _Spec(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class Claim(_Spec):
    """A claim the token must carry, with exactly this value."""

    name: str = Field(min_length=1, max_length=256, description="Claim name, e.g. team.")
    value: str = Field(max_length=1024, description="The value the claim must have.")


class TokenKey(_Spec):
    """A public key that may sign tokens: RSA (n, e) or EC (crv, x, y), as in a JSON Web Key."""

    type: Literal["RSA", "EC"] = Field(description="Key type: RSA or EC.")
    kid: str = Field(min_length=1, max_length=256, description="Key id, matched against the token's kid.")
    alg: Literal["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"] = Field(
        description="Signature algorithm the key is used with."
    )
    n: str | None = Field(default=None, max_length=2048, description="RSA modulus (base64url).")
    e: str | None = Field(
        default=None, max_length=64, description="RSA public exponent (base64url), e.g. AQAB."
    )
    crv: Literal["P-256", "P-384", "P-521"] | None = Field(default=None, description="EC curve.")
    x: str | None = Field(default=None, max_length=256, description="EC x coordinate (base64url).")
    y: str | None = Field(default=None, max_length=256, description="EC y coordinate (base64url).")


class Authentication(_Spec):
    """How viewers' JSON Web Tokens are validated."""

    issuers: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="Accepted token issuers (iss), e.g. https://login.example.com.",
    )
    audiences: list[str] = Field(default_factory=list, max_length=16, description="Accepted audiences (aud).")
    claims: list[Claim] = Field(
        default_factory=list, max_length=32, description="Claims the token must carry."
    )
    keys: list[TokenKey] = Field(
        default_factory=list, max_length=16, description="Keys that may sign tokens."
    )


class AccessPolicySpec(_Spec):
    """Who may view an account's videos: tokens these rules accept."""

    account_name: str = Field(
        min_length=1,
        max_length=63,
        pattern=NAME_PATTERN,
        description="The account, in this namespace (immutable).",
    )
    role: Literal["Reader"] = Field(
        description="What holders of accepted tokens may do: Reader (view videos)."
    )
    authentication: Authentication = Field(default_factory=Authentication, description="Token validation.")


class Archival(_Spec):
    retention_period: str | None = Field(
        default=None,
        pattern=r"^P(\d+Y)?(\d+M)?(\d+W)?(\d+D)?$",
        description="How long recordings are kept, as an ISO 8601 period, e.g. P30D.",
    )


class VideoSpec(_Spec):
    """A video of an account: its title, description and archival."""

    account_name: str = Field(
        min_length=1,
        max_length=63,
        pattern=NAME_PATTERN,
        description="The account, in this namespace (immutable).",
    )
    title: str = Field(default="", max_length=256, description="Title shown to viewers.")
    description: str = Field(default="", max_length=2048, description="Description shown to viewers.")
    archival: Archival = Field(default_factory=Archival, description="How recordings are kept.")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # OpenAPI type of the cell: string, date
    description: str
    cell: Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec: type[_Spec]
    columns: tuple[Column, ...]

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def storage_name(self, name: str) -> str:
        """The SealedObject's name: fixed for (kind, name), always a valid name, never the name itself."""
        digest = hashlib.sha256(f"{self.kind}/{name}".encode()).hexdigest()[:40]
        return f"{self.singular}-{digest}"


def _spec(field: str) -> Callable[[dict[str, Any]], Any]:
    return lambda obj: (obj.get("spec") or {}).get(field, "")


def _age(obj: dict[str, Any]) -> Any:
    return obj["metadata"].get("creationTimestamp")


ACCESS_POLICY = Kind(
    kind="AccessPolicy",
    plural="accesspolicies",
    singular="accesspolicy",
    short_names=("vap",),
    spec=AccessPolicySpec,
    columns=(
        Column("Account", "string", "The account.", _spec("accountName")),
        Column("Role", "string", "What accepted tokens may do.", _spec("role")),
        Column("Age", "date", "Time since creation.", _age),
    ),
)
VIDEO = Kind(
    kind="Video",
    plural="videos",
    singular="video",
    short_names=("vid",),
    spec=VideoSpec,
    columns=(
        Column("Account", "string", "The account.", _spec("accountName")),
        Column("Title", "string", "Title shown to viewers.", _spec("title")),
        Column("Age", "date", "Time since creation.", _age),
    ),
)
KINDS = {k.plural: k for k in (ACCESS_POLICY, VIDEO)}
BY_KIND = {k.kind: k for k in KINDS.values()}
