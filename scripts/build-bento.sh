#!/usr/bin/env bash
# Builds a Bento: `./scripts/build-bento.sh` (the GPU image) or `./scripts/build-bento.sh cpu`
# (a CPU-only image), for the pack scripts/pack.sh picks (FACE_MODEL, else the one serve.sh
# serves), imported first when it is not in the store. Extra arguments go to `bentoml build`.
set -euo pipefail
cd "$(dirname "$0")/.."
image="${1:-gpu}"
[ $# -gt 0 ] && shift
export BENTOML_HOME="${BENTOML_HOME:-$PWD/bentoml_home}" BENTOML_DO_NOT_TRACK=True
source scripts/pack.sh
bentofile="$(mktemp --suffix=.yaml)"
trap 'rm -f "$bentofile"' EXIT
.venv/bin/python scripts/bentofile.py "$image" "$pack" > "$bentofile"
context=.
if [ "$image" = cpu ]; then
    # pyproject.toml's overrides keep insightface's `onnxruntime` only for the `cpu` extra, which
    # an image's `pip install -r` never names: the CPU image's copy keeps it unconditionally.
    context="$(mktemp -d)"
    trap 'rm -rf "$bentofile" "$context"' EXIT
    cp -r service.py face_api runners requirements "$context/"
    sed "s/\"onnxruntime==\([^;\"]*\); extra == 'cpu'\"/\"onnxruntime==\1\"/" pyproject.toml \
        > "$context/pyproject.toml"
    grep -q '"onnxruntime==[^;"]*",' "$context/pyproject.toml"
fi
.venv/bin/bentoml build -f "$bentofile" "$context" "$@"
