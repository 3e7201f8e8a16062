#!/usr/bin/env bash
# Fetches a kubectl for the Kubernetes manifest tests (tests/python/
# test_kubernetes.py renders deploy/kubernetes with `kubectl kustomize`).
#
# No cluster is needed or contacted: kubectl only renders the kustomizations.
# It comes from Debian's `kubernetes-client` package, unpacked (no root, no
# install) into .tools/kubectl/ (git-ignored). A no-op when it is already there.
# Its kustomize is v2.0.3: the manifests stick to what that version reads
# (`bases`, `patchesStrategicMerge`, `commonLabels`); newer kubectl renders
# them the same, with deprecation warnings.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.tools/kubectl"
bin="$dest/usr/bin/kubectl"

if [ -x "$bin" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
  echo "setup-kubectl: needs apt-get and dpkg (Debian/Ubuntu) to fetch kubernetes-client; or put a kubectl at $bin" >&2
  exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "setup-kubectl: fetching Debian's kubernetes-client into $dest" >&2
(cd "$tmp" && apt-get download kubernetes-client >/dev/null 2>"$tmp/apt.log") || {
  cat "$tmp/apt.log" >&2
  echo "setup-kubectl: apt-get download kubernetes-client failed (is the Debian mirror reachable? try apt-get update)" >&2
  exit 1
}
mkdir -p "$dest"
dpkg -x "$tmp"/kubernetes-client_*.deb "$dest"
"$bin" version --client >/dev/null
