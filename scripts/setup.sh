#!/usr/bin/env bash
# Idempotent set-up for nni-asng on a fresh Debian machine:
#   1. Debian packages: dataset-fashion-mnist (real data), chromium (web-UI test), openssh-server (the tests of
#      NNI's remote training service start SSH servers on loopback ports; the package's own service is not used)
#   2. a virtual environment (.venv, or $NNI_ASNG_VENV), reused when present
#   3. the project with its cli and test extras, at the exact tested versions of constraints.txt,
#      reinstalled only when pyproject.toml or constraints.txt changed
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${NNI_ASNG_VENV:-.venv}"
say() { echo "[setup] $*"; }

missing=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || missing+=(dataset-fashion-mnist)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    say "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    say "Debian packages present (dataset-fashion-mnist, chromium, openssh-server)"
fi

if [ -x "$VENV/bin/python" ]; then
    say "reusing virtual environment $VENV"
else
    say "creating virtual environment $VENV"
    python3 -m venv "$VENV"
fi

stamp="$VENV/.nni-asng-installed"
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then
    say "python packages up to date (pyproject.toml and constraints.txt unchanged)"
else
    say "installing nni-asng and pinned dependencies into $VENV (a few minutes the first time)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade "pip>=23" 2>&1 | grep -v "is ignored" || true
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[cli,test]" 2>&1 | grep -v "is ignored" || true
    "$VENV/bin/python" -c "import nni, torch, pytorch_lightning, pydantic, nni_asng.app" \
        || { echo "[setup] ERROR: the installed packages do not import; see pip's output above" >&2; exit 1; }
    echo "$want" > "$stamp"
fi
say "done: $("$VENV/bin/python" -c 'import nni, torch, pytorch_lightning as pl; print(f"nni {nni.__version__}, torch {torch.__version__}, lightning {pl.__version__}")')"
