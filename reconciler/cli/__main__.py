"""``python -m reconciler.cli``."""

from . import main

main()
