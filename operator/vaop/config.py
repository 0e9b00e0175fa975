"""Operator settings, read once from the environment (``VAOP_*``) at start-up."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VAOP_", frozen=True)

    namespace: str = Field(
        default="vaop-system",
        description="The operator's own namespace: platform keys and leader election live here.",
    )
    metrics_port: int = Field(default=8080, description="Prometheus metrics; 0 disables the endpoint.")
    health_port: int = Field(default=8081, description="Liveness endpoint /healthz; 0 disables it.")
    workers: int = Field(default=8, description="Accounts reconciled at the same time.")
    webhook_port: int = Field(default=9443, description="HTTPS port of the admission webhook; 0 disables it.")
    webhook_host: str = Field(default="0.0.0.0", description="Address the webhook listens on.")  # noqa: S104
    webhook_url: str | None = Field(
        default=None, description="Base URL the apiserver calls (local mode); unset: the in-cluster Service."
    )
    webhook_cert_secret: str | None = Field(
        default=None,
        description="TLS Secret (ca.crt, tls.crt, tls.key) kept by cert-manager; unset: own CA.",
    )
    webhook_service: str = Field(
        default="video-analyzer-operator-webhook", description="The webhook's Service."
    )
    webhook_configuration: str = Field(
        default="video-analyzer-operator", description="Name of the ValidatingWebhookConfiguration it keeps."
    )
    check_interval: float = Field(
        default=30.0, description="Seconds between checks of each (identity, key) pair."
    )
    grace_period: float = Field(
        default=300.0, description="Seconds of transient vault failures before accounts go KeyInaccessible."
    )
