#!/usr/bin/env bash
# Installs Azurite, Microsoft's Azure Storage emulator (npm package
# `azurite`), for the Azure artifact test (tests/python/test_mlflow_cloud.py):
# into .tools/azurite/ (git-ignored). Needs node and npm: when they are
# missing it installs Debian's `nodejs` and `npm` (apt, root). A no-op when
# Azurite is already there.
set -euo pipefail

# 3.35.0: the newest release that runs on Debian bookworm's Node 18 (3.36 needs
# Node 21, 3.37 Node 22); the test skips Azurite's API-version check.
version=3.35.0
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.tools/azurite"
bin="$dest/node_modules/.bin/azurite-blob"

if [ -x "$bin" ] && [ "$(cat "$dest/.version" 2>/dev/null)" = "$version" ]; then
  exit 0
fi
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
    echo "setup-azurite: needs node and npm (Debian: apt-get install nodejs npm, as root)" >&2
    exit 1
  fi
  echo "setup-azurite: installing Debian's nodejs and npm" >&2
  apt-get install -y --no-install-recommends nodejs npm >/dev/null || {
    apt-get update >/dev/null
    apt-get install -y --no-install-recommends nodejs npm >/dev/null
  }
fi

echo "setup-azurite: installing azurite@$version into $dest" >&2
mkdir -p "$dest"
npm install --prefix "$dest" --no-audit --no-fund --loglevel=error "azurite@$version" >&2
"$bin" --version >/dev/null
echo "$version" > "$dest/.version"
