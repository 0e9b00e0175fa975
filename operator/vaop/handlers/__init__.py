"""Kopf handlers. Importing this package registers them with Kopf's default registry."""

from . import accounts, indexes, keys, setup

__all__ = ["accounts", "indexes", "keys", "setup"]
