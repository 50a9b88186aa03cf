#!/usr/bin/env bash
# Run the core and one-shot test tiers with another Python and torch than the tested set (constraints.txt):
#   bash scripts/check_versions.sh [PYTHON=python3.13] [TORCH=2.15.*] [WORK_DIR=/tmp/nni-asng-versions]
# The venv gets that torch, then this checkout with its cli and test extras (editable, no constraints file);
# pip keeps the torch because pyproject.toml's range admits it, else it refuses. A machine-wide pip constraint
# file (some machines cap torch) is ignored for this venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${1:-python3.13}"
TORCH="${2:-2.15.*}"
WORK="${3:-/tmp/nni-asng-versions}"
rm -rf "$WORK" && mkdir -p "$WORK/home"
"$PYTHON" -m venv "$WORK/env"
PY="$WORK/env/bin/python"
export PIP_CONSTRAINT=/dev/null
"$PY" -m pip install -q "torch==$TORCH" -e ".[cli,test]" 2>&1 | grep -v "is ignored" || true
"$PY" -c 'import sys, torch, nni, numpy, pytorch_lightning as pl
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, nni {nni.__version__}, lightning {pl.__version__}, numpy {numpy.__version__}")'
HOME="$WORK/home" "$PY" -m pytest -q -m "core or oneshot" -p no:cacheprovider
