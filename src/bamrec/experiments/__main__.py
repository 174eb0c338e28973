"""``python -m bamrec.experiments JOB.json``: run one experiment cell (what the runner starts per cell)."""

import sys

from bamrec.experiments.cell import main

sys.exit(main())
