"""``python -m sealbridge.node <config.json>`` runs one node process."""

import sys

from sealbridge.node.process import main

sys.exit(main())
