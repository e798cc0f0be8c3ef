"""``python -m salesrules`` runs the command line."""

import sys

from salesrules.cli import main

sys.exit(main())
