"""amqpprox: an AMQP 0.9.1 proxy for RabbitMQ, re-created in Python from Bloomberg's C++ amqpprox."""

__version__ = "0.1.0"
