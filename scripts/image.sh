#!/usr/bin/env bash
# make image: build model_code/Dockerfile with docker or podman, whichever this machine has (podman is
# installed from Debian's packages where neither exists and we are root), tag it by the content hash
# of model_code/ (the code bundle's sha256, first 12 hex digits), and print the image reference as the
# last word of the last line.
#
# Base image: the Dockerfile's pinned official python image when the engine can pull it; where no
# registry is reachable, a local base made here (a Debian bookworm rootfs from the apt mirror plus
# this machine's CPython >= 3.11.4, see ../shared/CONTAINERS.md), passed as PYTHON_IMAGE.
# With podman, the wheels of model_code/requirements.txt are downloaded by the host's pip (its index
# and CA settings) and the build runs with no network at all.
#
# Environment: PYTHON (default python3.11), MLOPS_IMAGE_BASE=auto|official|local (default auto),
# PYTHON_IMAGE (a base of your own; skips both), MLOPS_CONTAINER_ENGINE=docker|podman.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3.11}"
name="mlops-stack-model"
started=$(date +%s)

bash "$root/scripts/install_container_engine.sh"
engine="${MLOPS_CONTAINER_ENGINE:-}"
if [ -z "$engine" ]; then
  if docker info >/dev/null 2>&1; then engine=docker; else engine=podman; fi
fi
if [ "$engine" = podman ]; then
  export CONTAINERS_CONF="${CONTAINERS_CONF:-$root/mlops/local/containers.conf}"
fi

# The same name and tag rule as mlops/local/container.py (Engine.image_reference), which finds the image
# without asking the engine; ensure_image fails if the two ever disagree. This script runs before any venv
# exists, so it cannot import that module (mlops.settings needs PyYAML).
tag="$(cd "$root" && "$python" -c 'from pipelines.bundle import build_bundle; print(build_bundle().sha256[:12])')"
reference="$name:$tag"
[ "$engine" = podman ] && reference="localhost/$reference"

local_base() {
  # Debian's python3 is 3.11.2, below the floor: this machine's CPython goes into /usr/local instead.
  local version prefix base rootfs mirror
  version="$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
  prefix="$("$python" -c 'import sys; print(sys.base_prefix)')"
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11, 4) or sys.version_info[:2] != (3, 11))' || {
    echo "error: the local base needs CPython 3.11.x >= 3.11.4 ($python is $version)" >&2; exit 1; }
  [ "$prefix" != /usr ] || { echo "error: $python is the system Python; point PYTHON at a CPython of its own prefix" >&2; exit 1; }
  base="localhost/mlops-python-base:$version-bookworm"
  if podman image exists "$base"; then echo "$base"; return; fi
  command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  mirror="$(grep -h -m1 -oE '^URIs: \S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | cut -d' ' -f2)"
  mirror="${mirror:-http://deb.debian.org/debian}"
  rootfs="$(mktemp -d)/rootfs"
  echo "making local base $base: debootstrap bookworm from $mirror, CPython $version from $prefix" >&2
  # The shared libraries CPython's extension modules link, as Debian bookworm names them.
  debootstrap --variant=minbase \
    --include=ca-certificates,libssl3,libffi8,libsqlite3-0,libbz2-1.0,liblzma5,zlib1g,libreadline8,libncursesw6,libuuid1,libexpat1,libnsl2,libtirpc3,libcrypt1,libgdbm6 \
    bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || { tail -5 "$rootfs.log" >&2; exit 1; }
  mkdir -p "$rootfs/usr/local/bin" "$rootfs/usr/local/lib"
  cp -a "$prefix/bin/python3.11" "$rootfs/usr/local/bin/"
  ln -sf python3.11 "$rootfs/usr/local/bin/python3"
  ln -sf python3.11 "$rootfs/usr/local/bin/python"
  cp -a "$prefix"/lib/libpython3*.so* "$rootfs/usr/local/lib/" 2>/dev/null || true
  tar -C "$prefix/lib" --exclude='python3.11/site-packages/*' --exclude='python3.11/test' \
    --exclude='python3.11/config-3.11-*' --exclude='python3.11/idlelib' --exclude='python3.11/tkinter' \
    --exclude='python3.11/turtledemo' --exclude='__pycache__' -c python3.11 | tar -C "$rootfs/usr/local/lib" -x
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  chroot "$rootfs" /sbin/ldconfig
  chroot "$rootfs" /usr/local/bin/python3 -c 'import ssl, sqlite3, ctypes, bz2, lzma, zlib, uuid, pyexpat, venv, ensurepip' \
    || { echo "error: the local base's Python cannot import its standard library" >&2; exit 1; }
  tar -C "$rootfs" -c . | podman import --quiet \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$base" >/dev/null
  rm -rf "$(dirname "$rootfs")"
  echo "$base"
}

build_args=()
if [ -n "${PYTHON_IMAGE:-}" ]; then
  build_args+=(--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE")
elif [ "$engine" = podman ]; then
  official="$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$root/model_code/Dockerfile")"
  mode="${MLOPS_IMAGE_BASE:-auto}"
  if [ "$mode" = local ] || { [ "$mode" = auto ] && ! podman image exists "$official" \
      && ! timeout 120 podman pull -q "$official" >/dev/null 2>&1; }; then
    [ "$mode" = auto ] && echo "the official base $official cannot be pulled here: using a local base" >&2
    build_args+=(--build-arg "PYTHON_IMAGE=$(local_base)")
  fi
fi

if [ "$engine" = podman ]; then
  # Wheels through the host's pip (its index and CA), then a build with no network.
  wheels="$root/.cache/wheels"
  mkdir -p "$wheels"
  "$python" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
    -r "$root/model_code/requirements.txt" -d "$wheels" 2> >(grep -v '^WARNING: Location' >&2)
  pipconf="$(mktemp)"
  trap 'rm -f "$pipconf"' EXIT
  printf '[global]\nno-index = true\nfind-links = /wheels\n' >"$pipconf"
  build_args+=(--network=none -v "$wheels:/wheels:ro" -v "$pipconf:/etc/pip.conf:ro")
fi

log="$root/.cache/image-build.log"
mkdir -p "$(dirname "$log")"
echo "building $reference with $engine (log $log)" >&2
"$engine" build "${build_args[@]}" --label "org.opencontainers.image.revision=$tag" \
  -t "$reference" -f "$root/model_code/Dockerfile" "$root/model_code" >"$log" 2>&1 \
  || { tail -20 "$log" >&2; echo "error: the image build failed; log $log" >&2; exit 1; }
size="$("$engine" image inspect --format '{{.Size}}' "$reference")"
echo "built in $(( $(date +%s) - started )) s, $(( size / 1000000 )) MB: $reference"
