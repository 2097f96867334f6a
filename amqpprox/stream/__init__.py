"""The RabbitMQ Streams protocol (the ``rabbitmq_stream`` plugin), sans-IO.

``codec`` reads and writes the commands the proxy handles itself (the connection
handshake, Close, Metadata); ``scanner`` counts frames for the relay; ``handshake`` is
the state machine of the proxy playing the broker until ``Open`` names the vhost.
Nothing here does I/O or imports the rest of amqpprox.
"""
