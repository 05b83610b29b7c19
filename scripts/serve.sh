#!/usr/bin/env bash
# One command on a fresh machine: install, import the default model pack, serve on 127.0.0.1:3000.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export BENTOML_HOME="${BENTOML_HOME:-$PWD/bentoml_home}" BENTOML_DO_NOT_TRACK=True
pack="${FACE_MODEL:-buffalo_sc_int8}"
if [ -d "../shared/models/$pack" ]; then
    source_="../shared/models/$pack"          # the bundled pack in this workspace
else
    source_="$pack"                           # fetched with insightface's downloader
fi
.venv/bin/python -m face_api.packs import "$source_" --name "$pack" --if-missing
if [ -z "${FACE_API_KEYS:-}${FACE_API_KEYS_FILE:-}" ] && [ "${FACE_API_AUTH:-on}" != "off" ]; then
    FACE_API_KEYS="demo-$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(18))')"
    export FACE_API_KEYS
    echo "FACE_API_KEYS is not set: serving with the demo key  x-api-key: $FACE_API_KEYS"
fi
exec .venv/bin/bentoml serve service:FaceAPI --host "${FACE_HOST:-127.0.0.1}" \
    --port "${FACE_PORT:-3000}"
