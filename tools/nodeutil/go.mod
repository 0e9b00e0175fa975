// Small commands of our own for the kind tier: the pause container and the rlimit-stripping runc wrapper.
module vaop.local/tools/nodeutil

go 1.26.0
