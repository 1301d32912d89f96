"""``python -m gridcast.host.cli``: the same as the ``gridcast`` command."""

import sys

from gridcast.host.cli import main

sys.exit(main())
