import sys

from relaybench.cli import main

sys.exit(main())
