"""Train an any-quantile forecaster from a YAML config: ``anyquantile train`` from a checkout
(``python train_adaptive_attention.py --help``).

The command lives in ``anyquantile/cli/train.py``; install the package first (``make install`` or
``pip install -e .``).
"""

import sys

from anyquantile.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
