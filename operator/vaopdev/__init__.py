"""The local environments, for development and tests; never imported by the operator (``vaop``).

- ``binaries``: every Go-built binary, from ``tools/*/go.mod``, cached in ``~/.cache/vaop``;
- ``cluster``, ``environment``, ``openbao``: the local control plane (``make up``, the fast tier);
- ``rootfs``, ``ociarchive``, ``nodeimage``, ``podman``, ``image``, ``kindcluster``: the kind tier
  (``make kind``), made offline;
- ``velero``, ``certmanager``, ``netpolicy``, ``prometheus``, ``flux``, ``argocd``, ``gitserver``:
  the tools users run beside the operator, on the kind tier.
"""
