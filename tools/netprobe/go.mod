// The kind tier's network probe (tests/kind/test_network_policy.py): our own code, no dependencies.
module vaop.local/tools/netprobe

go 1.26.0
