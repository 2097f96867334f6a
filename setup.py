"""Build hook: the relay's frame scanner in C, unless ``AMQPPROX_NO_EXTENSIONS`` is set.

pyproject.toml holds everything else. The extension (``amqpprox/amqp/_framescan.c``) is
optional: without a compiler the install still succeeds and ``amqpprox.amqp.scanner``
runs the same walk in Python. ``AMQPPROX_NO_EXTENSIONS`` (set, and neither empty nor
``0``) skips the build here; at run time the same variable makes the scanner ignore an
extension that was built (``amqpprox.amqp.scanner``). A declaration in pyproject.toml
could not depend on it, which is why this file exists.
"""

from __future__ import annotations

import os

from setuptools import Extension, setup

NO_EXTENSIONS = os.environ.get("AMQPPROX_NO_EXTENSIONS", "") not in ("", "0")

FRAMESCAN = Extension(
    "amqpprox.amqp._framescan", sources=["amqpprox/amqp/_framescan.c"], optional=True
)

setup(ext_modules=[] if NO_EXTENSIONS else [FRAMESCAN])
