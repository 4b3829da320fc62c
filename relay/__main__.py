"""``python -m relay``: the same as ``relaybench relay``."""

import sys

from relay.cli import main
from relaybench.errors import RelaybenchError

try:
    sys.exit(main(sys.argv[1:]))
except RelaybenchError as exc:
    print(f"error: {exc.message}", file=sys.stderr)
    sys.exit(exc.exit_code)
except KeyboardInterrupt:
    sys.exit(130)
