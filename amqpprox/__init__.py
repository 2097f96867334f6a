"""amqpprox: an AMQP 0.9.1 proxy for RabbitMQ, re-created in Python from Bloomberg's amqpprox."""

__version__ = "0.1.0"
