"""Kopf handlers. Importing this package registers them with Kopf's default registry."""

from . import accounts, setup

__all__ = ["accounts", "setup"]
