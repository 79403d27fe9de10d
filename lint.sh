#!/usr/bin/env bash
# All linters in one place: ruff (pyflakes, pycodestyle, isort rules) and ruff's formatter.
set -euo pipefail
cd "$(dirname "$0")"
ruff check .
ruff format --check .
