"""Every module here registers itself on import; adding a file is all it takes."""

import sys

from bench.discovery import import_submodules

import_submodules(sys.modules[__name__])
