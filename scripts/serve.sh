#!/usr/bin/env bash
# One command on a fresh machine: install, import the default model pack, serve on 127.0.0.1:3000.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export BENTOML_HOME="${BENTOML_HOME:-$PWD/bentoml_home}" BENTOML_DO_NOT_TRACK=True

source scripts/pack.sh

# Without keys, a demo key kept in .face-api-key (made once, readable by you only).
if [ -z "${FACE_API_KEYS:-}${FACE_API_KEYS_FILE:-}" ] && [ "${FACE_API_AUTH:-on}" != "off" ]; then
    key_file="$PWD/.face-api-key"
    if [ -L "$key_file" ]; then
        echo "$key_file is a symbolic link: remove it (the demo key is written here, not through it)" >&2
        exit 1
    fi
    if [ ! -s "$key_file" ]; then
        # A new file of its own (0600, never through a link), renamed into place.
        .venv/bin/python - "$key_file" <<'PY'
import os, secrets, sys, tempfile
path = sys.argv[1]
descriptor, partial = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".face-api-key.")
with os.fdopen(descriptor, "w") as key:
    key.write("demo-" + secrets.token_urlsafe(18) + "\n")
os.replace(partial, path)
PY
    fi
    export FACE_API_KEYS_FILE="$key_file"
    echo "FACE_API_KEYS is not set: serving with the demo key in .face-api-key. In another shell:"
    echo "    export FACE_API_KEYS=$(cat "$key_file")"
fi
echo "Serving pack $pack on http://${FACE_HOST:-127.0.0.1}:${FACE_PORT:-3000} (API docs at /docs)"
exec .venv/bin/bentoml serve service:FaceAPI --host "${FACE_HOST:-127.0.0.1}" \
    --port "${FACE_PORT:-3000}"
