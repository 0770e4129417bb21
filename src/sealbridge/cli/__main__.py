"""``python -m sealbridge.cli`` is the ``sealbridge`` command."""

from sealbridge.cli.main import main

main()
