"""Forecast the hours after the data: ``anyquantile predict`` from a checkout (``python predict.py --help``).

The command lives in ``anyquantile/cli/predict.py``; install the package first (``make install`` or
``pip install -e .``).
"""

import sys

from anyquantile.cli.predict import main

if __name__ == "__main__":
    sys.exit(main())
