"""Benchmark harness for amqpprox: direct broker vs. proxy, side by side.

Run ``python -m bench --help``.  ``--tls`` adds a column for the proxy behind a TLS
listener.  Scenarios (``--only NAME``):

* ``msgs``    - 100-byte messages/s, one producer + one consumer process
* ``mib``     - MiB/s with 1 MiB messages (multi-frame bodies)
* ``conn``    - full AMQP connection open/close cycles per second, 4 workers
* ``latency`` - publish/deliver round trip p50/p99 in microseconds

The load generator is :mod:`bench.rawamqp`, a raw-socket client built on
pre-encoded frames, so it stays cheap next to the proxy and the broker.
"""
