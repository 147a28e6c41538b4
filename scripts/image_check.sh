#!/usr/bin/env bash
# What the model image would hold, without a container engine: a fresh venv with exactly
# model_code/requirements.txt (wheels only, as the Dockerfile installs them) and a folder holding only
# model_code/; every entrypoint step must resolve there.   make image-check
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"${PYTHON:-python3.11}" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --upgrade pip
"$work/venv/bin/pip" install --quiet --only-binary=:all: -r "$root/model_code/requirements.txt"
mkdir "$work/app"
cp -r "$root/model_code" "$work/app/"
cd "$work/app"
for step in $("$work/venv/bin/python" -c "from model_code.__main__ import STEPS; print(' '.join(STEPS))"); do
  "$work/venv/bin/python" -m model_code "$step" --help >/dev/null
  echo "ok  python -m model_code $step"
done
"$work/venv/bin/python" -m model_code env >/dev/null && echo "ok  python -m model_code env"
