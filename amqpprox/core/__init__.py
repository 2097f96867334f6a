"""The domain model and single source of truth: no HTTP, no text protocol, no sockets."""
