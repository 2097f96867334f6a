"""The control plane (I/O): the Unix control socket, REST, dashboard and metrics."""
