"""`python -m p2pnode` runs the command line."""

import sys

from p2pnode.cli import main

sys.exit(main())
