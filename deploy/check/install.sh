#!/usr/bin/env bash
# deploy/check/install.sh: the validators `make deploy-check` runs over deploy/ (see run.sh). Idempotent: a second
# run with nothing changed does no network work and takes well under a second.
#
#   install.sh          install what is missing or out of date
#   install.sh check    exit 1 (and say what is missing) unless everything is installed and current
#
# Everything goes under ${SIGNALSTAGE_CACHE:-<repo>/.cache}/deploy-check:
#   venv/        Python venv with requirements.txt (check-jsonschema, kubernetes-validate, docker-py), --no-deps:
#                every dependency is pinned in the file; pip's cache in pip-cache/
#   npm/         `npm ci` of package.json + package-lock.json (@kubernetes-models/prometheus-operator: the
#                prometheus-operator CRD schemas compiled to validators, with TypeScript types; typescript itself)
#   promtool/    promtool from Debian's `prometheus` package: the .deb is fetched with `apt-get download` and only
#                /usr/bin/promtool is extracted with dpkg-deb. Installing the package itself would pull the web UI's
#                JavaScript libraries and, through its maintainer scripts, create a user and try to start a
#                Prometheus server; promtool is one static binary and needs none of that.
#   */.installed the sha256 of the inputs that produced each part, so a changed pin reinstalls it
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
CACHE=${SIGNALSTAGE_CACHE:-$REPO/.cache}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
DIR=$CACHE/deploy-check
VENV=$DIR/venv
NPM_DIR=$DIR/npm
PROMTOOL_DIR=$DIR/promtool

log() { printf 'deploy-check: %s\n' "$*" >&2; }

py_sum() { { cat "$SCRIPT_DIR/requirements.txt"; python3 --version; } | sha256sum | cut -d' ' -f1; }
npm_sum() { cat "$SCRIPT_DIR/package.json" "$SCRIPT_DIR/package-lock.json" | sha256sum | cut -d' ' -f1; }
# The promtool stamp is the Debian version it came from; any version the archive serves is accepted.
py_current() { [[ -x $VENV/bin/check-jsonschema && "$(cat "$VENV/.installed" 2>/dev/null)" == "$(py_sum)" ]]; }
npm_current() {
	[[ -d $NPM_DIR/node_modules/@kubernetes-models/prometheus-operator && -x $NPM_DIR/node_modules/.bin/tsc &&
		"$(cat "$NPM_DIR/.installed" 2>/dev/null)" == "$(npm_sum)" ]]
}
promtool_current() { [[ -x $PROMTOOL_DIR/promtool && -s $PROMTOOL_DIR/.installed ]]; }

as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }

install_py() {
	if py_current; then return; fi
	log "pip install -r deploy/check/requirements.txt into $VENV"
	rm -rf "$VENV"
	python3 -m venv "$VENV"
	PIP_CACHE_DIR=$DIR/pip-cache "$VENV/bin/pip" install --quiet --disable-pip-version-check \
		--no-deps -r "$SCRIPT_DIR/requirements.txt"
	# Fails loudly if the pins miss a dependency (--no-deps installs exactly the list).
	"$VENV/bin/python" -c 'import check_jsonschema, kubernetes_validate, docker.utils.build, yaml'
	py_sum >"$VENV/.installed"
}

install_npm() {
	if npm_current; then return; fi
	command -v npm >/dev/null || { log "npm not found: install Node.js (20 or later)"; exit 1; }
	log "npm ci (@kubernetes-models/prometheus-operator, typescript) into $NPM_DIR"
	rm -rf "$NPM_DIR"
	mkdir -p "$NPM_DIR"
	cp "$SCRIPT_DIR/package.json" "$SCRIPT_DIR/package-lock.json" "$NPM_DIR/"
	# --ignore-scripts: neither package needs an install script, and none from the registry should run here.
	(cd "$NPM_DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error --cache "$DIR/npm-cache")
	npm_sum >"$NPM_DIR/.installed"
}

install_promtool() {
	if promtool_current; then return; fi
	command -v apt-get >/dev/null || { log "apt-get not found: promtool comes from Debian's prometheus package"; exit 1; }
	log "promtool from Debian's prometheus package (apt-get download + dpkg-deb -x) into $PROMTOOL_DIR"
	local tmp
	tmp=$(mktemp -d "$DIR/promtool.XXXXXX")
	# shellcheck disable=SC2064
	trap "rm -rf '$tmp'" RETURN
	# apt-get download writes into the current directory; as root it warns that _apt cannot write there, which
	# is harmless.
	if ! (cd "$tmp" && apt-get download -q prometheus >/dev/null 2>&1); then
		log "apt-get download failed, running apt-get update and retrying"
		as_root apt-get update -q >&2
		(cd "$tmp" && apt-get download -q prometheus >&2)
	fi
	local deb
	deb=$(ls "$tmp"/prometheus_*.deb)
	dpkg-deb -x "$deb" "$tmp/root"
	mkdir -p "$PROMTOOL_DIR"
	install -m 0755 "$tmp/root/usr/bin/promtool" "$PROMTOOL_DIR/promtool"
	"$PROMTOOL_DIR/promtool" --version >/dev/null
	dpkg-deb -f "$deb" Version >"$PROMTOOL_DIR/.installed"
}

case ${1:-install} in
install)
	mkdir -p "$DIR"
	install_py
	install_npm
	install_promtool
	;;
check)
	ok=0
	py_current || { log "missing or out of date: $VENV"; ok=1; }
	npm_current || { log "missing or out of date: $NPM_DIR"; ok=1; }
	promtool_current || { log "missing: $PROMTOOL_DIR/promtool"; ok=1; }
	exit $ok
	;;
*)
	echo "usage: $0 [install|check]" >&2
	exit 2
	;;
esac
