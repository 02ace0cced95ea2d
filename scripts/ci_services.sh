#!/bin/sh
# Install what the web-app tests need from Debian packages, when missing:
# PostgreSQL 15 with PostGIS 3 (tests/functional/test_results_database.py, tests/functional/test_upload_api.py) and Chromium
# (tests/functional/test_upload_page_in_a_browser.py, driven by Playwright). Idempotent: does nothing when all
# are present. The tests start their own throwaway PostgreSQL cluster on a free port;
# set TEST_DATABASE_URL to use an existing server instead.
set -eu

PG_BIN=/usr/lib/postgresql/15/bin
POSTGIS=/usr/share/postgresql/15/extension/postgis.control
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

missing=""
[ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] || missing="$missing postgresql-15"
[ -f "$POSTGIS" ] || missing="$missing postgresql-15-postgis-3"
[ -x "$CHROMIUM" ] || missing="$missing chromium"

if [ -z "$missing" ]; then
    echo "ci_services: PostgreSQL 15, PostGIS and Chromium are present"
    exit 0
fi

echo "ci_services: installing$missing"
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
        echo "ci_services: need root (or sudo) to install$missing" >&2; exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Only the binaries: no cluster is created or started by the package (the tests make their own).
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "ci_services: done"
