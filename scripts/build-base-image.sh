#!/usr/bin/env bash
# Builds the Bentos' base image, python:3.11-slim-bookworm, from a Debian mirror, for hosts that
# cannot pull it from Docker Hub (air-gapped or proxied sites). It holds Debian bookworm's
# Python 3.11 with pip and venv, and trusts the system's CAs, plus the host's extra ones when
# asked (a TLS-inspecting proxy's), for pip and for uv (SSL_CERT_FILE, UV_NATIVE_TLS).
#
#   sudo ./scripts/build-base-image.sh                  # Debian's CAs only
#   sudo ./scripts/build-base-image.sh --host-cas       # plus /usr/local/share/ca-certificates/*.crt
#
# Settings: DEBIAN_MIRROR (default http://deb.debian.org/debian), BASE_IMAGE_TAG (default
# python:3.11-slim-bookworm, the tag bentofile.yaml's docker.base_image names), DOCKER (the
# client, default docker). Needs root, debootstrap and a running Docker daemon.
set -euo pipefail
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
tag="${BASE_IMAGE_TAG:-python:3.11-slim-bookworm}"
docker="${DOCKER:-docker}"
host_cas=no
for arg in "$@"; do
    case "$arg" in
        --host-cas) host_cas=yes ;;
        *) echo "usage: $0 [--host-cas]" >&2; exit 2 ;;
    esac
done
command -v debootstrap >/dev/null || { echo "debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
echo "Bootstrapping Debian bookworm with Python 3.11 from $mirror (about 90 s)..."
debootstrap --variant=minbase \
    --include=python3.11,python3-pip,python3-venv,python-is-python3,ca-certificates \
    bookworm "$root" "$mirror" > "$root.debootstrap.log" 2>&1 \
    || { tail -20 "$root.debootstrap.log" >&2; exit 1; }
rm -f "$root.debootstrap.log"
# Like the official image: pip installs into the system Python without a venv.
rm -f "$root"/usr/lib/python3.11/EXTERNALLY-MANAGED
if [ "$host_cas" = yes ]; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates > /dev/null
fi
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | "$docker" import \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV UV_NATIVE_TLS=1' \
    --change 'CMD ["python3"]' \
    - "$tag"
echo "Built $tag"
