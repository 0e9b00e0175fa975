"""Providers whose libraries are optional extras of the package (``pip install
'video-analyzer-operator[pkcs11,azure]'``; the chart's image has them all)."""

from __future__ import annotations

import importlib.util

# provider name -> (a module its library brings, the package extra that installs it)
_EXTRAS = {
    "pkcs11": ("pkcs11", "pkcs11"),
    "azureKeyVault": ("azure.keyvault.keys", "azure"),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package (azure) is missing too
        return False


def missing(provider: str) -> str | None:
    """What to install for ``provider`` when this installation lacks its library, or None."""
    needed = _EXTRAS.get(provider)
    if needed is None or _installed(needed[0]):
        return None
    module, extra = needed
    return (
        f"the {provider} provider's library ({module}) is not installed in this operator: install the "
        f"package with its {extra!r} extra (pip install 'video-analyzer-operator[{extra}]'), or use the "
        "chart's image, which has every extra"
    )
