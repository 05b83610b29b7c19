#!/usr/bin/env bash
# One command on a fresh machine: install, import the default model pack, serve on 127.0.0.1:3000.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export BENTOML_HOME="${BENTOML_HOME:-$PWD/bentoml_home}" BENTOML_DO_NOT_TRACK=True

# The pack: FACE_MODEL if set; else the workspace's bundled buffalo_sc_int8 (../shared); else
# buffalo_sc, the smallest pack insightface publishes (SCRFD-500M and MobileFaceNet, a 16 MB
# download, fetched once into the model store).
if [ -n "${FACE_MODEL:-}" ]; then
    pack="$FACE_MODEL"
elif [ -d ../shared/models/buffalo_sc_int8 ]; then
    pack=buffalo_sc_int8
else
    pack=buffalo_sc
fi
export FACE_MODEL="$pack"
if [ -d "../shared/models/$pack" ]; then
    source_="../shared/models/$pack"          # a folder beside the checkout
else
    source_="$pack"                           # fetched with insightface's downloader
fi
.venv/bin/python -m face_api.inference.packs import "$source_" --name "$pack" --if-missing

# Without keys, a demo key kept in .face-api-key (made once, readable by you only).
if [ -z "${FACE_API_KEYS:-}${FACE_API_KEYS_FILE:-}" ] && [ "${FACE_API_AUTH:-on}" != "off" ]; then
    key_file="$PWD/.face-api-key"
    if [ ! -s "$key_file" ]; then
        (umask 077 && .venv/bin/python -c 'import secrets; print("demo-" + secrets.token_urlsafe(18))' > "$key_file")
    fi
    export FACE_API_KEYS_FILE="$key_file"
    echo "FACE_API_KEYS is not set: serving with the demo key in .face-api-key. In another shell:"
    echo "    export FACE_API_KEYS=$(cat "$key_file")"
fi
echo "Serving pack $pack on http://${FACE_HOST:-127.0.0.1}:${FACE_PORT:-3000} (API docs at /docs)"
exec .venv/bin/bentoml serve service:FaceAPI --host "${FACE_HOST:-127.0.0.1}" \
    --port "${FACE_PORT:-3000}"
