#!/usr/bin/env bash
# Install minigpt, its command and its test tools into the current Python environment.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python}

if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  # Pinned on purpose: where a local CPU wheel of this version exists pip takes it, instead of
  # downloading the newest release with several GB of CUDA packages. On a GPU machine this is
  # the CUDA build of the same version.
  "$PYTHON" -m pip install "torch==2.13.0"
fi
"$PYTHON" -m pip install -e ".[dev]"
