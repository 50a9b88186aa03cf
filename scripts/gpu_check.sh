#!/usr/bin/env bash
# One prepared GPU check of nni-asng: one command, at most ~8 minutes on one H100/H200.
#
#   bash scripts/gpu_check.sh OUT_DIR               # on a CUDA machine
#   bash scripts/gpu_check.sh --cpu-smoke OUT_DIR   # the same steps with tiny sizes on the CPU (~3-4 minutes;
#                                                   # tests/test_gpu_check.py runs it on every CI run)
#
# With the device tool (it copies the working tree plus the `carry` paths; files under $OUT come back):
#
#   run(command="bash scripts/gpu_check.sh $OUT/gpu", carry=[".gpu_bundle"], timeout_s=540)
#
# Build the bundle first, here (PyPI access): `bash scripts/build_gpu_bundle.sh` writes
# .gpu_bundle/gpu_bundle_py312.tar.xz (~45 MB: nni 3.0 and what the GPU image lacks, filelock==3.11.0,
# a Fashion-MNIST subset). The GPU image has Python 3.12, torch 2.11 (CUDA 13), torchvision, Lightning 2.6.6,
# torchmetrics, and no package registry. When the bundle is there (GPU mode; in --cpu-smoke only when nni
# does not import), this script unpacks it into a temporary folder and puts its core/ folder FIRST on
# PYTHONPATH (its filelock 3.11.0 must shadow the image's newer one, with which NasExperiment.start
# hangs), then the repository, then each fallback/<module> folder whose module the image cannot import.
#
# Steps (scripts/gpu_check.py; each has a time cap, a failed or timed-out step does not stop the others; in
# --cpu-smoke, steps 5-6 run beside steps 2-4, on the CPU's second core):
#   1. machine description: nvidia-smi, python/torch/CUDA/cuDNN/Lightning/nni versions  -> machine.txt/.json
#   2. the CUDA-only tests (pytest -m gpu)                                               -> pytest_gpu.log/.xml
#   3. step cost at the paper size (hub DARTS and ENAS cell, 8 cells, C=16, batch 64, 32x32x3): ASNG, PDAS,
#      AdvantageNAS, Reinforce, MultiComplexity, NNI RandomOneShot/DARTS/GumbelDARTS; CUDA time per step,
#      max_memory_allocated, ratios, θ overhead                                          -> step_cost/, step_cost.png
#   4. the ASNG-NAS CIFAR-10 search protocol's iteration (asng_enas_cifar10.yaml: 8 cells, C=16, batch 64,
#      λ=2, its data loaders with augmentation, on CIFAR-shaped synthetic data) in fp32, bf16-mixed and
#      bf16-mixed + channels_last; projected time of its 39,000 iterations             -> cifar_protocol/
#   5. the main config (asng_enas_fashion_mnist.yaml) through `python -m nni_asng run` on CUDA    -> main_run/
#   6. `python -m nni_asng launch` of the found architecture with trialGpuNumber 1; the trial's retrain.json
#      records the device it trained on                                                -> main_run/launch, nni-experiments
#   7. summary.md / summary.json: every step and the targets (ASNG step <= 3x RandomOneShot and <= 0.3x DARTS,
#      peak memory <= 1.5x RandomOneShot, θ overhead <= 2 % of the step, 39k protocol iterations <= 1 h)
# Everything (tables, logs, plots) goes under OUT_DIR; gpu_check.log is this script's whole output.
# Exit status: 0 when every step ran (targets missed are reported, not failures), 1 otherwise.
#
# Environment: PYTHON (default: .venv/bin/python when present, else python3); GPU_CHECK_BUNDLE (archive path;
# default .gpu_bundle/gpu_bundle_py312.tar.xz); GPU_CHECK_USE_BUNDLE=0|1 (force); GPU_CHECK_BUDGET (seconds
# for steps 2-6; default 450 on GPU, 1200 in --cpu-smoke).
set -uo pipefail

usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; }
MODE=gpu
OUT=
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu-smoke) MODE=cpu-smoke; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "gpu_check.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) if [ -n "$OUT" ]; then echo "gpu_check.sh: one OUT_DIR only" >&2; exit 2; fi; OUT="$1"; shift ;;
    esac
done
if [ -z "$OUT" ]; then usage >&2; exit 2; fi

REPO="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
say() { echo "[gpu_check $(date +%H:%M:%S)] $*"; }
STARTED=$(date +%s)

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x "$REPO/.venv/bin/python" ]; then PY="$REPO/.venv/bin/python"; else PY=python3; fi
fi
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
say "mode $MODE, output $OUT, python $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])' 2>&1))"

# ---------------------------------------------------------------------------------------- the bundle
BUNDLE="${GPU_CHECK_BUNDLE:-$REPO/.gpu_bundle/gpu_bundle_py312.tar.xz}"
USE="${GPU_CHECK_USE_BUNDLE:-}"
if [ -z "$USE" ]; then
    USE=0
    if [ -f "$BUNDLE" ]; then
        if [ "$MODE" = gpu ] || ! "$PY" -c "import nni" >/dev/null 2>&1; then USE=1; fi
    fi
fi
BASE_PYTHONPATH="${PYTHONPATH:-}"
export PYTHONPATH="$REPO${BASE_PYTHONPATH:+:$BASE_PYTHONPATH}"
BUNDLE_INFO="{\"used\": false}"
FASHION=""
if [ "$USE" = 1 ]; then
    if [ ! -f "$BUNDLE" ]; then say "ERROR: GPU_CHECK_USE_BUNDLE=1 but $BUNDLE does not exist"; exit 1; fi
    say "unpacking $BUNDLE ($(( $(stat -c %s "$BUNDLE") / 1000000 )) MB)"
    tar -C "$WORK" -xJf "$BUNDLE" || { say "ERROR: could not unpack $BUNDLE"; exit 1; }
    B="$WORK/$(basename "$BUNDLE" .tar.xz)"
    added=()
    if [ -f "$B/fallback/MODULES.txt" ]; then
        while IFS= read -r line; do
            module="${line%%:*}"
            [ -n "$module" ] || continue
            if ! env -u PYTHONPATH "$PY" -c "import $module" >/dev/null 2>&1; then
                added+=("$module")
            fi
        done < "$B/fallback/MODULES.txt"
    fi
    path="$B/core:$REPO"
    for module in "${added[@]+"${added[@]}"}"; do path="$path:$B/fallback/$module"; done
    export PYTHONPATH="$path${BASE_PYTHONPATH:+:$BASE_PYTHONPATH}"
    say "PYTHONPATH: bundle core first, then the repository; fallback packages added (the image lacks them): ${added[*]:-none}"
    if [ -d "$B/data/fashion-mnist" ]; then FASHION="$B/data/fashion-mnist"; fi
    BUNDLE_INFO="{\"used\": true, \"archive\": \"$BUNDLE\", \"bytes\": $(stat -c %s "$BUNDLE"), \"fallback_added\": \"${added[*]:-}\"}"
    if [ -f "$B/MANIFEST.txt" ]; then cp "$B/MANIFEST.txt" "$OUT/bundle_manifest.txt"; fi
else
    say "no bundle used (nni from the environment: $("$PY" -c 'import nni, os; print(os.path.dirname(nni.__file__))' 2>&1 | tail -1))"
fi

# NNI keeps an experiment manifest in ~/nni-experiments: a private HOME for this check (matplotlib keeps
# its font cache).
export MPLCONFIGDIR="${MPLCONFIGDIR:-${HOME:-$WORK}/.cache/matplotlib}"
export HOME="$WORK/home"
mkdir -p "$HOME"
export PYTHONUNBUFFERED=1

ARGS=(--out "$OUT" --mode "$MODE" --work "$WORK" --bundle-info "$BUNDLE_INFO" --started "$STARTED")
if [ -n "$FASHION" ]; then ARGS+=(--fashion-mnist "$FASHION"); fi
if [ -n "${GPU_CHECK_BUDGET:-}" ]; then ARGS+=(--budget "$GPU_CHECK_BUDGET"); fi
"$PY" "$REPO/scripts/gpu_check.py" "${ARGS[@]}"
rc=$?
say "done in $(( $(date +%s) - STARTED )) s, exit status $rc; summary: $OUT/summary.md"
exit $rc
