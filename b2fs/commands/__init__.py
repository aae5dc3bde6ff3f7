"""The sub-commands of ``b2fs``, one module each (``register(subparsers)`` adds a parser)."""
