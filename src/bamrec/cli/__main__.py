"""`python -m bamrec.cli` (used by torchrun)."""

import sys

from bamrec.cli import main

sys.exit(main())
