"""The plumbing a controller needs and Kopf does not give, owned once: the watch cache (list then
watch, with what each reader keeps), the work queue (de-duplicating, per-key backoff), Leases (leader
election; shard claims use the same helpers), and the retry classification every loop uses.

Kopf stays the framework the handlers are written in (docs/architecture.md says what each does).
"""
