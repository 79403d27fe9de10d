#!/usr/bin/env python
"""samfit-bench entry point: ``python run_benchmark.py [run|list|report|status] [sweep=NAME] [key=value ...]``.

With no argument it runs ``sweeps/demo.yaml`` (LiteMedSAM on the synthetic domains) and prints the table.
"""

import sys

from bench.app.cli import main

if __name__ == "__main__":
    sys.exit(main())
