#!/usr/bin/env bash
# A container engine for `make image` and the image tests: nothing to do when docker answers or
# podman exists; otherwise, as root on Debian, podman and what it needs here from Debian's packages
# (runc: crun 1.8.1 cannot run on this cgroup layout; debootstrap: the local base image).
set -euo pipefail
if docker info >/dev/null 2>&1 || command -v podman >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "error: no container engine (docker or podman) and no way to install one (needs root and apt-get)" >&2
  exit 1
fi
echo "installing podman from Debian's packages"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc slirp4netns fuse-overlayfs uidmap debootstrap >/dev/null
podman --version
