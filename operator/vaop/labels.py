"""Labels, annotations and Secret types the operator puts on what it makes (one place for all names)."""

from __future__ import annotations

from . import models

MANAGED_BY = "app.kubernetes.io/managed-by"
OPERATOR_NAME = "video-analyzer-operator"
MANAGED = {MANAGED_BY: OPERATOR_NAME}

COMPONENT = f"{models.GROUP}/component"
ACCOUNT = f"{models.GROUP}/account"

ACCOUNT_KEY_COMPONENT = "account-key"
ACCOUNT_KEY_SELECTOR = f"{COMPONENT}={ACCOUNT_KEY_COMPONENT}"
ACCOUNT_KEY_SECRET_TYPE = f"{models.GROUP}/wrapped-account-key"
PLATFORM_KEY_SECRET_TYPE = f"{models.GROUP}/platform-key"

ANNOTATION_KEY_CHECK_VALUE = f"{models.GROUP}/key-check-value"
ENVELOPE_DATA_KEY = "envelope"
ANNOTATION_WRAPPED_AT = f"{models.GROUP}/wrapped-at"
