"""Video Analyzer BYOK operator: account keys wrapped by system or customer keys, double encrypted.

Layers, with dependencies pointing one way only:

- ``handlers``: Kopf decorators, thin; they read events and call the domain.
- ``domain``: pure decisions (account state, conditions, what to re-wrap) on plain data.
- ``providers`` and ``crypto``: side effects behind small interfaces (key vaults, the envelope).
- ``runtime``: the plumbing Kopf does not give (watch caches, work queue, Leases, retries).
- ``health``, ``permissions``, ``sharding``: one replica among several (probes, RBAC check, claims).

The local environments (control plane, kind cluster, images) are the separate package ``vaopdev``,
which is not part of the operator's image.
"""

__version__ = "0.1.0"
