#!/usr/bin/env bash
# Build the package bundle that scripts/gpu_check.sh needs on the GPU machine.
#
# Runs HERE (a machine with PyPI access), not on the GPU machine. The GPU machine's image has Python 3.12
# with its own torch 2.11 (CUDA 13), torchvision, pytorch-lightning 2.6.6 and torchmetrics, but no package
# registry; nni 3.0 and the packages it lacks must travel with the working tree, inside the device tool's
# 64 MiB limit that also counts the repository. As wheels they do not fit (nni's wheel alone is 61 MB);
# unpacked and packed as tar.xz they do (~45 MB).
#
#   bash scripts/build_gpu_bundle.sh              # -> .gpu_bundle/gpu_bundle_py312.tar.xz (+ bundle.json)
#   bash scripts/build_gpu_bundle.sh DIR          # -> DIR/...
#
# Then, with the device tool (the working tree and the `carry` paths travel; files under $OUT come back):
#
#   run(command="bash scripts/gpu_check.sh $OUT/gpu", carry=[".gpu_bundle"], timeout_s=540)
#
# What the archive holds (one folder, unpacked by gpu_check.sh into a temporary directory):
#   core/                 put FIRST on PYTHONPATH: nni 3.0 and what the image lacks (pydantic, typeguard, ...),
#                         and filelock==3.11.0, which must shadow the image's newer filelock: with it,
#                         NasExperiment.start / nnictl hang in nni/tools/nnictl/config_utils.py
#   fallback/<module>/    one folder per package that the image probably has (requests, pyyaml, psutil,
#                         pytest, ...): gpu_check.sh adds a folder only when the image cannot import <module>
#   data/fashion-mnist/   the first 8,000 training and 5,000 test images of Fashion-MNIST (uncompressed
#                         IDX files, xz compresses them), for the main config's search and retraining
#   MANIFEST.txt          the packages and versions
#
# Options (environment): PYTHON (python with pip; default .venv/bin/python, else python3),
# GPU_BUNDLE_BUILD (scratch folder; default a temporary one, removed at the end),
# FASHION_MNIST (folder of the four Fashion-MNIST .gz files; default /usr/share/datasets/fashion-mnist),
# XZ_LEVEL (default 9).
set -euo pipefail
cd "$(dirname "$0")/.."

DEST="${1:-.gpu_bundle}"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
FASHION="${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"
LEVEL="${XZ_LEVEL:-9}"
NAME=gpu_bundle_py312
if [ -n "${GPU_BUNDLE_BUILD:-}" ]; then
    BUILD="$GPU_BUNDLE_BUILD"; mkdir -p "$BUILD"; KEEP=1
else
    BUILD="$(mktemp -d)"; KEEP=0
fi
cleanup() { if [ "$KEEP" = 0 ]; then rm -rf "$BUILD"; fi; }
trap cleanup EXIT
say() { echo "[build_gpu_bundle] $*"; }

# Pinned to the versions the project is tested with (pure Python where the package allows it;
# pydantic-core, websockets, psutil, pyyaml, simplejson, charset-normalizer ship cp312/abi3 manylinux wheels).
CORE=(
    "nni==3.0"
    "filelock==3.11.0"          # NNI's pin (<3.12); a newer one makes NasExperiment.start hang
    "typeguard==4.1.2"          # NNI's pin (<4.1.3)
    "typing_extensions==4.16.0" # pydantic 2.14 needs a recent one
    "astor==0.8.1"
    "json-tricks==3.17.3"
    "prettytable==3.18.0"
    "wcwidth==0.9.4"
    "PythonWebHDFS==0.2.3"
    "responses==0.26.3"
    "schema==0.7.8"
    "websockets==17.4"
    "pydantic==2.14.4"
    "pydantic-core==2.50.5"
    "annotated-types==0.8.0"
    "typing-inspection==0.4.5"
    "mlxtend==0.25.0"
)
# module-that-proves-it-is-installed:requirement
FALLBACK=(
    "pynvml:nvidia-ml-py==13.615.71"   # NNI's GPU metrics collector (trialGpuNumber > 0)
    "simplejson:simplejson==4.3.0"
    "requests:requests==2.34.2"
    "urllib3:urllib3==2.8.0"
    "idna:idna==3.20"
    "certifi:certifi==2026.10.19.post1"
    "charset_normalizer:charset-normalizer==3.5.3"
    "psutil:psutil==7.2.2"
    "colorama:colorama==0.4.6"
    "cloudpickle:cloudpickle==3.1.3"
    "yaml:PyYAML==6.0.4"
    "tqdm:tqdm==4.70.1"
    "packaging:packaging==26.4"
    "joblib:joblib==1.6.0"
    "pytest:pytest==9.2.0"
    "pygments:pygments==2.21.0"          # pytest's terminal output
    "pluggy:pluggy==1.7.0"
    "iniconfig:iniconfig==2.3.1"
)

download() {   # download DIR REQUIREMENT...
    local dir="$1"; shift
    "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform any \
        -d "$dir" "$@" 2>&1 | { grep -v "is ignored" || true; }   # this machine's extra local indexes
}

unpack() {     # unpack WHEEL DIR: the wheel's files as pip would put them into site-packages
    "$PY" - "$1" "$2" <<'EOF'
import sys, zipfile, pathlib
wheel, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
dest.mkdir(parents=True, exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        name = info.filename
        parts = name.split('/')
        if parts[0].endswith('.data'):          # <dist>.data/purelib|platlib/... go into site-packages
            if len(parts) > 2 and parts[1] in ('purelib', 'platlib'):
                name = '/'.join(parts[2:])
            else:
                continue                        # scripts/headers/data: not needed on PYTHONPATH
        target = dest / name
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(z.read(info))
        mode = (info.external_attr >> 16) & 0o777
        if mode:
            target.chmod(mode)                  # nni_node/node must stay executable
EOF
}

rm -rf "$BUILD/wheels" "$BUILD/$NAME"
mkdir -p "$BUILD/wheels/core" "$BUILD/wheels/fallback" "$BUILD/$NAME/core" "$BUILD/$NAME/fallback"
say "downloading ${#CORE[@]} core wheels (cp312, manylinux x86_64) into $BUILD/wheels"
download "$BUILD/wheels/core" "${CORE[@]}"
for wheel in "$BUILD"/wheels/core/*.whl; do
    unpack "$wheel" "$BUILD/$NAME/core"
done
say "downloading ${#FALLBACK[@]} fallback wheels"
for item in "${FALLBACK[@]}"; do
    module="${item%%:*}"; requirement="${item#*:}"
    dir="$BUILD/wheels/fallback/$module"
    mkdir -p "$dir"
    download "$dir" "$requirement"
    for wheel in "$dir"/*.whl; do
        unpack "$wheel" "$BUILD/$NAME/fallback/$module"
    done
done
# Byte-code is rebuilt by Python 3.12 when needed. NNI's node bundle carries source maps, TypeScript typings and
# docs (~40 MB unpacked) that node never loads at run time: without them the archive is ~8 MB smaller.
find "$BUILD/$NAME" -name '__pycache__' -type d -prune -exec rm -rf {} +
find "$BUILD/$NAME/core/nni_node" -type f \( -name '*.map' -o -name '*.d.ts' -o -name '*.md' \) -delete

say "Fashion-MNIST subset from $FASHION"
"$PY" - "$FASHION" "$BUILD/$NAME/data/fashion-mnist" <<'EOF'
import gzip, pathlib, sys
src, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
dest.mkdir(parents=True, exist_ok=True)
keep = {'train': 8000, 't10k': 5000}
for split, n in keep.items():
    for kind, header, item in (('images', 16, 784), ('labels', 8, 1)):
        name = f'{split}-{kind}-idx{3 if kind == "images" else 1}-ubyte'
        data = gzip.open(src / f'{name}.gz').read()
        head = bytearray(data[:header])
        head[4:8] = n.to_bytes(4, 'big')                 # the item count of the IDX header
        (dest / name).write_bytes(bytes(head) + data[header:header + n * item])
print(f'{keep["train"]} training and {keep["t10k"]} test images')
EOF

{
    echo "nni-asng GPU bundle for CPython 3.12, manylinux x86_64; built $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "core (first on PYTHONPATH):"
    for r in "${CORE[@]}"; do echo "  $r"; done
    echo "fallback (added only when the image cannot import the module):"
    for r in "${FALLBACK[@]}"; do echo "  $r"; done
    echo "data: Fashion-MNIST, first 8000 training and 5000 test images (IDX, uncompressed)"
} > "$BUILD/$NAME/MANIFEST.txt"
printf '%s\n' "${FALLBACK[@]}" > "$BUILD/$NAME/fallback/MODULES.txt"

say "packing (xz -$LEVEL; a few minutes)"
mkdir -p "$DEST"
rm -f "$DEST/$NAME.tar.xz"
unpacked=$(du -sb "$BUILD/$NAME" | cut -f1)
tar -C "$BUILD" -cf - "$NAME" | xz -T1 "-$LEVEL" -c > "$DEST/$NAME.tar.xz.tmp"
mv "$DEST/$NAME.tar.xz.tmp" "$DEST/$NAME.tar.xz"
size=$(stat -c %s "$DEST/$NAME.tar.xz")
repo=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
"$PY" - "$DEST/bundle.json" "$NAME.tar.xz" "$size" "$unpacked" "$repo" <<'EOF'
import json, sys, time
path, archive, size, unpacked, repo = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
limit = 64 * 2 ** 20
json.dump({'archive': archive, 'bytes': size, 'mb': round(size / 1e6, 1), 'unpacked_bytes': unpacked,
           'tracked_repository_bytes': repo, 'device_carry_limit_bytes': limit,
           'room_left_bytes': limit - size - repo, 'python': '3.12', 'platform': 'manylinux x86_64',
           'built': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, open(path, 'w'), indent=2)
EOF
say "$DEST/$NAME.tar.xz: $(( size / 1000000 )) MB (unpacked $(( unpacked / 1000000 )) MB); tracked repository $(( repo / 1000000 )) MB"
if [ "$size" -gt 55000000 ]; then
    say "WARNING: the bundle is larger than 55 MB: with the repository it may not fit the device tool's 64 MiB"
    exit 1
fi
