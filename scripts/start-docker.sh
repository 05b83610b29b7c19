#!/usr/bin/env bash
# Makes sure a Docker daemon answers, for the container tests (tests/e2e/test_images.py) or for
# building the images on a machine that has none running. When none answers it installs Debian's
# `docker.io` and `debootstrap` (for scripts/build-base-image.sh) if missing, and starts `dockerd`
# without a bridge network: containers and builds then use the host's network
# (`docker run --network host`, `bentoml containerize ... --opt network=host`), so their traffic
# stays on this machine's loopback. Needs root for that part.
#
# Prints the pid of the daemon it started, or nothing when one was already running; stop it
# with `kill PID` when done. DOCKERD_LOG names its log (default: /tmp/face-api-dockerd.log).
set -euo pipefail
client=docker
[ -x /usr/bin/docker ] && client=/usr/bin/docker  # Debian's client builds with BuildKit alone
if "$client" info > /dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "no Docker daemon answers, and starting one needs root" >&2
    exit 1
fi
if ! command -v dockerd > /dev/null || ! command -v debootstrap > /dev/null; then
    echo "Installing Debian's docker.io and debootstrap..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap > /dev/null
    client=/usr/bin/docker
fi
if [ ! -e /etc/docker/daemon.json ]; then
    mkdir -p /etc/docker
    echo '{"bridge": "none", "iptables": false, "ip-forward": false, "ip-masq": false}' \
        > /etc/docker/daemon.json
fi
log="${DOCKERD_LOG:-/tmp/face-api-dockerd.log}"
setsid dockerd > "$log" 2>&1 < /dev/null &
pid=$!
for _ in $(seq 60); do
    if "$client" info > /dev/null 2>&1; then
        echo "$pid"
        exit 0
    fi
    kill -0 "$pid" 2> /dev/null || break
    sleep 1
done
echo "dockerd did not start; its log ($log) ends with:" >&2
tail -20 "$log" >&2
kill "$pid" 2> /dev/null || true
exit 1
