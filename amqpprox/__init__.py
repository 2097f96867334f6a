"""amqpprox: an AMQP 0.9.1 proxy for RabbitMQ, re-created in Python from Bloomberg's amqpprox.

Importing the package loads nothing else and changes no import machinery.
:func:`build` says which frame scanner the relay runs: the C extension or Python
(``AMQPPROX_NO_EXTENSIONS``, see ``amqpprox.amqp.scanner``).
"""

__version__ = "0.1.0"
__all__ = ["__version__", "build"]


def build() -> str:
    """``"c"`` when the relay's frame scanner is the C extension, ``"python"`` when not."""
    from amqpprox.amqp import scanner  # noqa: PLC0415 (imported when asked, not with the package)

    return scanner.IMPLEMENTATION
