"""The validating admission webhook: its HTTPS server, its certificate and its registration."""
