"""``python -m cli`` is the ``nextaction`` command."""

import sys

from cli.main import main

sys.exit(main())
