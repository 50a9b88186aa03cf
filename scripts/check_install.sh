#!/usr/bin/env bash
# Install the nni-asng wheel into a fresh venv that already holds another torch, and run README's
# five-minute example there. Shows that `pip install nni-asng` keeps the user's torch.
#   bash scripts/check_install.sh [TORCH_VERSION=2.13.0] [WORK_DIR=/tmp/nni-asng-install-check]
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH="${1:-2.13.0}"
WORK="${2:-/tmp/nni-asng-install-check}"
rm -rf "$WORK" && mkdir -p "$WORK"
python3 -m venv "$WORK/env"
PY="$WORK/env/bin/python"
"$PY" -m pip install -q "torch==$TORCH" 2>&1 | grep -v "is ignored" || true
echo "torch before: $("$PY" -c 'import torch; print(torch.__version__)')"
"$PY" -m pip wheel -q --no-deps -w "$WORK/dist" . 2>&1 | grep -v "is ignored" || true
"$PY" -m pip install -q "$WORK"/dist/nni_asng-*.whl 2>&1 | grep -v "is ignored" || true
echo "torch after:  $("$PY" -c 'import torch; print(torch.__version__)')"
"$PY" -m pip list 2>/dev/null | grep -iE '^(torch|nni|nni-asng|pytorch-lightning|pydantic|matplotlib|mlxtend) ' || true
# README's five-minute example, as written there
python3 - > "$WORK/five_minutes.py" <<'PYEOF'
import re
text = open('README.md').read()
section = text[text.index('## Five minutes with nni-asng'):]
print(re.search(r'```python\n(.*?)```', section, flags=re.S).group(1))
PYEOF
(cd "$WORK" && HOME="$WORK" "$PY" -W ignore five_minutes.py 2>&1 | tail -3)
echo "five-minute example: OK"
