"""``python -m mock_upstream``: the same as ``relaybench mock``."""

import sys

from mock_upstream.cli import main
from relaybench.errors import RelaybenchError

try:
    sys.exit(main())
except RelaybenchError as exc:
    print(f"error: {exc.message}", file=sys.stderr)
    sys.exit(exc.exit_code)
