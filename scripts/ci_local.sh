#!/usr/bin/env bash
# Run jobs of .gitlab-ci.yml on this machine with gitlab-ci-local and the shell executor:
#   make ci-local                      # lint and unit-tests
#   bash scripts/ci_local.sh offline-plan
# A GitLab shell runner ignores `image:`; gitlab-ci-local picks docker whenever a job names an image,
# so the jobs run from a copy of the CI file without image keys, in a fresh clone of HEAD.
# Needs Node.js 20 (gitlab-ci-local 4.52.x crashes on newer ones) and rsync (installed if missing).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.cache/gitlab-ci-local"
jobs=("$@")
[ ${#jobs[@]} -gt 0 ] || jobs=(lint unit-tests)

node_major="$(node --version 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/')"
if [ "${node_major:-0}" != "20" ]; then
  echo "ci-local: gitlab-ci-local 4.52.x needs Node.js 20, found '${node_major:-none}'" >&2
  exit 2
fi
command -v rsync >/dev/null || { apt-get update -qq && apt-get install -y -qq rsync >/dev/null; }
if [ ! -x "$tools/node_modules/.bin/gitlab-ci-local" ]; then
  mkdir -p "$tools"
  npm install --prefix "$tools" --silent --no-audit --no-fund gitlab-ci-local@4.52.2
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git clone --quiet "$root" "$work/repo"
cd "$work/repo"
"$root/.venv/bin/python" - <<'PY'
import yaml
ci = yaml.safe_load(open(".gitlab-ci.yml"))
for value in ci.values():
    if isinstance(value, dict):
        value.pop("image", None)
open(".gitlab-ci.yml", "w").write(yaml.safe_dump(ci, sort_keys=False))
PY
git -c user.email=ci@local -c user.name=ci-local commit --quiet -am "ci-local: shell executor copy"
"$tools/node_modules/.bin/gitlab-ci-local" --shell-executor-no-image "${jobs[@]}"
