"""The AMQP data plane: listeners, sessions, the broker connector and the relay (I/O)."""
