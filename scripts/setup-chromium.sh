#!/usr/bin/env bash
# Installs the headless browser the console test drives
# (tests/python/test_console.py): Debian's chromium and chromium-driver,
# through apt and only when either is missing. Needs root for apt-get, so
# .ci/run calls it before the tests; on a machine without root or apt the
# console test is skipped with a loud message instead (see its docstring).
set -euo pipefail

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "setup-chromium: chromium/chromedriver missing and not root: the console browser test will be SKIPPED (run this script as root to install them)" >&2
  exit 0
fi
echo "setup-chromium: installing chromium and chromium-driver (apt)" >&2
install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    chromium chromium-driver >/dev/null
}
# A fresh machine may have no package lists yet: update once and retry.
install || { apt-get update -q >/dev/null && install; } || {
  echo "setup-chromium: FAILED: apt-get install chromium chromium-driver" >&2
  exit 1
}
