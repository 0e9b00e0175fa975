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
# On the account and its account-key Secret: the account ID its envelope and data are bound to. It
# travels with a backup (unlike metadata.uid), so a restored account finds its own key again.
ANNOTATION_ACCOUNT_ID = f"{models.GROUP}/account-id"
# On the account, set by a person: "give up the key of this account ID and make a new one".
ANNOTATION_REPLACE_ACCOUNT_KEY = f"{models.GROUP}/replace-account-key"
ENVELOPE_DATA_KEY = "envelope"
ANNOTATION_WRAPPED_AT = f"{models.GROUP}/wrapped-at"

# The data API's SealedObjects (internal.videoanalyzer.io): which kind and account each belongs to.
SEALED_OBJECT_KIND = "internal.videoanalyzer.io/kind"
SEALED_OBJECT_ACCOUNT = "internal.videoanalyzer.io/account"
