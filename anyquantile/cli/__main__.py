"""``python -m anyquantile.cli COMMAND ...``: the console script ``anyquantile`` without its launcher."""

import sys

from anyquantile.cli import main

sys.exit(main())
