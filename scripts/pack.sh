# Sourced by serve.sh and build-bento.sh, in the checkout with .venv installed: picks the model
# pack and makes sure it is in the model store ($BENTOML_HOME), exporting FACE_MODEL.
# The pack: FACE_MODEL if set; else the workspace's bundled buffalo_sc_int8 (../shared); else
# buffalo_sc, the smallest pack insightface publishes (SCRFD-500M and MobileFaceNet, a 16 MB
# download, fetched once into the model store; FACE_PACK_DOWNLOAD_URL names a mirror).
if [ -n "${FACE_MODEL:-}" ]; then
    pack="$FACE_MODEL"
elif [ -d ../shared/models/buffalo_sc_int8 ]; then
    pack=buffalo_sc_int8
else
    pack=buffalo_sc
fi
export FACE_MODEL="$pack"
if [ -d "../shared/models/$pack" ]; then
    pack_source="../shared/models/$pack"     # a folder beside the checkout
else
    pack_source="$pack"                      # fetched with insightface's downloader
fi
.venv/bin/python -m face_api.inference.packs import "$pack_source" --name "$pack" --if-missing
