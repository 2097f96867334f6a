"""Benchmark harness for amqpprox: direct broker vs. proxy, side by side.

Run ``python -m bench --help``.  Columns: ``direct`` (the broker), ``proxy`` (amqpprox
started by the bench), ``haproxy`` (when installed; ``--no-haproxy`` skips it, see
:mod:`bench.haproxy`); ``--tls``, ``--also-no-per-source``, ``--also-haproxy-splice``,
``--also-haproxy-one-thread`` and ``--also-forwarder`` add more.  Scenarios (``--only NAME``):

* ``msgs``    - 100-byte messages/s, one producer + one consumer process
* ``mib``     - MiB/s with 1 MiB messages (multi-frame bodies)
* ``conn``    - full AMQP connection open/close cycles per second, 4 workers
* ``latency`` - publish/deliver round trip p50/p99 in microseconds
* ``idle``    - N held connections: RSS per session, admin API latency while held
  (not part of ``--quick`` unless asked for with ``--only idle``)

Every scenario runs ``--repeat`` rounds (3; 1 with ``--quick``), the target order
rotated each round; the table shows medians, ``--json`` every run.  Around ``msgs``,
``mib`` and ``conn`` the CPU time of the intermediary's process is read from
``/proc/<pid>/stat`` (per million messages, per GiB, per connection).

The load generator is :mod:`bench.rawamqp`, a raw-socket client built on
pre-encoded frames, so it stays cheap next to the proxy and the broker.
"""
