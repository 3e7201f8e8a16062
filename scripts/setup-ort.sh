#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library Podium loads at run time.
#
# ONNX Runtime has no Debian package and its own download step needs the open
# internet, so we take the library out of the official `onnxruntime` wheel on
# PyPI and unpack it into .ort/ (git-ignored). A no-op when it is already there.
# Podium finds it there by itself; ORT_DYLIB_PATH overrides.
set -euo pipefail

ORT_VERSION="${PODIUM_ORT_VERSION:-1.31.1}"
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.ort"
lib="$dest/libonnxruntime.so"

if [ -f "$lib" ] && [ "$(cat "$dest/VERSION" 2>/dev/null)" = "$ORT_VERSION" ]; then
  exit 0
fi

py="${PYTHON:-python3}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "setup-ort: fetching onnxruntime==$ORT_VERSION wheel from PyPI into $dest" >&2
"$py" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  "onnxruntime==$ORT_VERSION" -d "$tmp"
wheel="$(ls "$tmp"/onnxruntime-*.whl | head -n 1)"
"$py" -m zipfile -e "$wheel" "$tmp/unpacked"

so="$(ls "$tmp"/unpacked/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n 1 || true)"
if [ -z "$so" ]; then
  echo "setup-ort: the wheel $wheel has no onnxruntime/capi/libonnxruntime.so.*" >&2
  exit 1
fi
mkdir -p "$dest"
cp "$so" "$lib.tmp"
mv "$lib.tmp" "$lib"
echo "$ORT_VERSION" > "$dest/VERSION"
echo "setup-ort: installed $(basename "$so") as $lib" >&2
