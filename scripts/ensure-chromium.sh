#!/usr/bin/env bash
# make test's browser: the report page's check (tests/viz/test_report.py) opens report.html in
# headless Chromium. Where none is installed and this runs as root with apt-get (CI, a Debian
# container), install Debian's chromium (about 60 s and 121 MB measured); anywhere else say that
# the browser check will skip. Says so in one line on stderr and prints 1 on stdout when a browser
# is there (make test's FEASSAMPLE_REQUIRE_BROWSER); fails only when an install it tried fails.
set -euo pipefail
for exe in chromium chromium-browser google-chrome; do
  if command -v "$exe" >/dev/null 2>&1; then
    echo "browser for the report check: $(command -v "$exe")" >&2
    echo 1
    exit 0
  fi
done
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the report page's browser check (apt-get, about a minute)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
  command -v chromium >/dev/null
  echo "browser for the report check: $(command -v chromium)" >&2
  echo 1
  exit 0
fi
echo "no Chromium and no root apt-get here: the report page's browser check will skip (apt-get install chromium)" >&2
