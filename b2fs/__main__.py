"""``python -m b2fs`` is the ``b2fs`` command."""

import sys

from b2fs.cli import main

sys.exit(main())
