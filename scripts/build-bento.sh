#!/usr/bin/env bash
# Builds the Bento for the pack FACE_MODEL names (default buffalo_sc_int8), importing the bundled
# pack first when it is not in the store. Extra arguments go to `bentoml build`.
set -euo pipefail
cd "$(dirname "$0")/.."
export BENTOML_HOME="${BENTOML_HOME:-$PWD/bentoml_home}" BENTOML_DO_NOT_TRACK=True
pack="${FACE_MODEL:-buffalo_sc_int8}"
export FACE_MODEL="$pack"
if [ -d "../shared/models/$pack" ]; then
    .venv/bin/python -m face_api.packs import "../shared/models/$pack" --name "$pack" --if-missing
fi
# The image must serve the pack the Bento carries: write it into the Bento's envs.
bentofile="$(mktemp --suffix=.yaml)"
trap 'rm -f "$bentofile"' EXIT
sed "/name: FACE_MODEL/{n;s/value: .*/value: $pack/}" bentofile.yaml > "$bentofile"
.venv/bin/bentoml build -f "$bentofile" "$@"
