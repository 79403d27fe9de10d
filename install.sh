#!/usr/bin/env bash
# Install samfit-bench's dependencies: requirements.txt, then the official sam2 package.
# sam2 1.1.0 is an sdist whose build would otherwise pull a second (CUDA) torch into an isolated build
# environment and try to compile a CUDA extension used only for mask hole-filling; build it against the
# installed torch, without the extension, and without re-resolving its dependencies (listed in requirements.txt).
set -euo pipefail
cd "$(dirname "$0")"
python -m pip install -r requirements.txt
SAM2_BUILD_CUDA=0 python -m pip install --no-build-isolation --no-deps --no-cache-dir sam2==1.1.0
