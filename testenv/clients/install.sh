#!/usr/bin/env bash
# testenv/clients/install.sh: Segment's own client libraries and a real browser, for the real-client tests
# (testenv/clients*.go). Idempotent: a second run with nothing changed does no network work.
#
#   install.sh          install what is missing or out of date, then print where it is
#   install.sh check    exit 1 (and say what is missing) unless everything is installed and current
#
# What it installs, all under ${SIGNALSTAGE_CACHE:-<repo>/.cache}/clients except Chromium:
#   npm/            a copy of package.json + package-lock.json and `npm ci` of them (@segment/analytics-next,
#                   @segment/analytics-node at the exact versions of the lock file); npm's own cache in npm-cache/
#   venv/           a Python venv with requirements.txt installed (segment-analytics-python and its pinned deps);
#                   pip's cache in pip-cache/
#   */.installed    the sha256 of the inputs that produced each one, so a changed pin reinstalls
#   Chromium:       Debian's `chromium` package via apt-get when /usr/bin/chromium (or $SIGNALSTAGE_CHROMIUM)
#                   is missing: a system package, the one thing outside .cache/.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
CACHE=${SIGNALSTAGE_CACHE:-$REPO/.cache}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
DIR=$CACHE/clients
NPM_DIR=$DIR/npm
VENV=$DIR/venv
CHROMIUM=${SIGNALSTAGE_CHROMIUM:-/usr/bin/chromium}

log() { printf 'clients: %s\n' "$*" >&2; }

npm_sum() { cat "$SCRIPT_DIR/package.json" "$SCRIPT_DIR/package-lock.json" | sha256sum | cut -d' ' -f1; }
py_sum() { { cat "$SCRIPT_DIR/requirements.txt"; python3 --version; } | sha256sum | cut -d' ' -f1; }

npm_current() { [[ -d $NPM_DIR/node_modules/@segment/analytics-next && "$(cat "$NPM_DIR/.installed" 2>/dev/null)" == "$(npm_sum)" ]]; }
py_current() { [[ -x $VENV/bin/python && "$(cat "$VENV/.installed" 2>/dev/null)" == "$(py_sum)" ]]; }
chromium_present() { [[ -x $CHROMIUM ]]; }

install_npm() {
	if npm_current; then return; fi
	command -v npm >/dev/null || { log "npm not found: install Node.js (20 or later)"; exit 1; }
	log "npm ci (@segment/analytics-next, @segment/analytics-node) into $NPM_DIR"
	rm -rf "$NPM_DIR"
	mkdir -p "$NPM_DIR"
	cp "$SCRIPT_DIR/package.json" "$SCRIPT_DIR/package-lock.json" "$NPM_DIR/"
	# --ignore-scripts: neither library needs an install script, and none from the registry should run here.
	(cd "$NPM_DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error --cache "$DIR/npm-cache")
	npm_sum >"$NPM_DIR/.installed"
}

install_py() {
	if py_current; then return; fi
	log "pip install -r requirements.txt into $VENV"
	rm -rf "$VENV"
	python3 -m venv "$VENV"
	PIP_CACHE_DIR=$DIR/pip-cache "$VENV/bin/pip" install --quiet --disable-pip-version-check \
		--no-deps -r "$SCRIPT_DIR/requirements.txt"
	"$VENV/bin/python" -c 'import segment.analytics' # fails loudly if the pins miss a dependency
	py_sum >"$VENV/.installed"
}

install_chromium() {
	if chromium_present; then return; fi
	command -v apt-get >/dev/null || { log "$CHROMIUM missing and no apt-get: install Chromium, or set SIGNALSTAGE_CHROMIUM"; exit 1; }
	local sudo=()
	if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
	log "apt-get install chromium"
	"${sudo[@]}" apt-get install -y -q --no-install-recommends chromium >"$DIR/apt.log" 2>&1 || {
		"${sudo[@]}" apt-get update -q >>"$DIR/apt.log" 2>&1
		"${sudo[@]}" apt-get install -y -q --no-install-recommends chromium >>"$DIR/apt.log" 2>&1
	} || { log "apt-get install chromium failed: see $DIR/apt.log"; exit 1; }
	chromium_present || { log "chromium installed but $CHROMIUM is missing"; exit 1; }
}

cmd_check() {
	local missing=()
	npm_current || missing+=("npm packages ($NPM_DIR)")
	py_current || missing+=("python venv ($VENV)")
	chromium_present || missing+=("chromium ($CHROMIUM)")
	if ((${#missing[@]})); then
		log "missing or out of date: ${missing[*]}; run testenv/clients/install.sh (or make clients)"
		exit 1
	fi
}

mkdir -p "$DIR"
case ${1:-install} in
install)
	install_npm
	install_py
	install_chromium
	log "ready: node_modules in $NPM_DIR, python in $VENV/bin/python, browser $CHROMIUM"
	;;
check) cmd_check ;;
*) echo "usage: $0 [install|check]" >&2; exit 2 ;;
esac
