#!/usr/bin/env bash
# sink/chdbcheck/run.sh: apply every sink migration and run every analyst query on the current ClickHouse engine
# that the PyPI package chdb embeds (see check.py). `make test` runs it through `make chdb-check`.
# `run.sh storage [ROWS]` measures bytes per signal on that engine instead (storage.py).
#
# The virtualenv lives under ${SIGNALSTAGE_CACHE:-<repo>/.cache}/venv (outside git, never system-wide) and is
# created on first use and reused afterwards; chdb is pinned so every run checks the same engine version.
#   CHDB_VERSION       [4.4.0]   the chdb wheel (chdb 4.4.0 embeds ClickHouse 26.9 through chdb-core 26.9.0)
#   CHDB_CORE_VERSION  [26.9.0]
#   PYTHON             [python3] interpreter that creates the venv (3.9 or newer)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
CACHE=${SIGNALSTAGE_CACHE:-$REPO/.cache}
VENV=$CACHE/venv
CHDB_VERSION=${CHDB_VERSION:-4.4.0}
CHDB_CORE_VERSION=${CHDB_CORE_VERSION:-26.9.0}
PYTHON=${PYTHON:-python3}

log() { printf 'chdb-check: %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
	log "creating virtualenv $VENV"
	mkdir -p "$CACHE"
	"$PYTHON" -m venv "$VENV"
fi
installed=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("chdb"), m.version("chdb-core"))' 2>/dev/null || true)
if [ "$installed" != "$CHDB_VERSION $CHDB_CORE_VERSION" ]; then
	log "installing chdb==$CHDB_VERSION chdb-core==$CHDB_CORE_VERSION into $VENV (about 900 MB, once)"
	"$VENV/bin/pip" install --quiet --disable-pip-version-check "chdb==$CHDB_VERSION" "chdb-core==$CHDB_CORE_VERSION"
fi
if [ "${1:-}" = storage ]; then
	# Bytes per signal on the current engine, before and after the analyst schema (storage.py; BENCHMARKS.md).
	exec "$VENV/bin/python" "$SCRIPT_DIR/storage.py" "$REPO/sink" "${2:-200000}"
fi
exec "$VENV/bin/python" "$SCRIPT_DIR/check.py" "$REPO/sink"
