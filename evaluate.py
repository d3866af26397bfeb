"""Score trained checkpoints on a split: ``anyquantile evaluate`` from a checkout (``python evaluate.py --help``).

The command lives in ``anyquantile/cli/evaluate.py``; install the package first (``make install`` or
``pip install -e .``).
"""

import sys

from anyquantile.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
