"""amqpprox: an AMQP 0.9.1 proxy for RabbitMQ, re-created in Python from Bloomberg's amqpprox.

The handshake codec and the session are compiled with mypyc when the package is built
(setup.py); ``AMQPPROX_PURE_PYTHON=1`` runs their Python source instead, and
:func:`build` says which is loaded (``_build``).
"""

from amqpprox._build import build_in_use as build
from amqpprox._build import prefer_source

__version__ = "0.1.0"
__all__ = ["__version__", "build"]

prefer_source()  # before any compiled module can be imported
