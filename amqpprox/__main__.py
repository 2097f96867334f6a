"""``python -m amqpprox``: the proxy's command line."""

import sys

from amqpprox.cli import main

sys.exit(main())
