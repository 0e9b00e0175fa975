"""Video Analyzer BYOK operator: account keys wrapped by system or customer keys, double encrypted.

Layers, with dependencies pointing one way only:

- ``handlers``: Kopf decorators, thin; they read events and call the domain.
- ``domain``: pure decisions (account state, conditions, what to re-wrap) on plain data.
- ``providers`` and ``crypto``: side effects behind small interfaces (key vaults, the envelope).
- ``devcluster``: the local control plane used by ``make up`` and the tests (never by handlers).
"""

__version__ = "0.1.0"
