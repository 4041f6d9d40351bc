"""`python -m p2pnode.cli` runs the command line."""

import sys

from p2pnode.cli.main import main

sys.exit(main())
