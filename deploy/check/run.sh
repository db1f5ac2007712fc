#!/usr/bin/env bash
# deploy/check/run.sh: validate deploy/ offline; `make deploy-check` runs install.sh, then this. Each step prints
# one line and how long it took; the first failure stops the run.
#
#   compose      deploy/docker-compose.yml against the compose-spec JSON schema (check-jsonschema's vendored copy)
#   k8s          deploy/k8s: built-in kinds with kubernetes-validate (strict, Kubernetes 1.34 and 1.37), the
#                kustomization's file list, the Secrets the README creates (k8s.py)
#   crds         ServiceMonitor and PrometheusRule against the prometheus-operator CRD schemas and types (crds.mjs)
#   rules        `promtool check rules` and `promtool test rules` (alerts_test.yml) over the PrometheusRule's groups
#   dashboards   every dashboard is JSON with a title, a uid and a query on every panel
#   context      the Docker build context under .dockerignore, and the three binaries built from only that, the
#                way deploy/Dockerfile builds them (CGO_ENABLED=0, -trimpath, no network: GOPROXY=off)
#
# That the stages export every metric the dashboards and rules use, and that the compose environment runs the
# pipeline, are Go tests (testenv/metric_names_test.go, testenv/compose_native_test.go), run by `make test`.
# Work files go to a directory of this run under <cache>/deploy-check, removed at the end (runs from several
# worktrees sharing one cache do not collide).
#
#   run.sh            every check
#   run.sh rules      print the alert rules as a plain Prometheus rules file (for a Prometheus without the
#                     operator, e.g. next to the compose stack)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
CACHE=${SIGNALSTAGE_CACHE:-$REPO/.cache}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
DIR=$CACHE/deploy-check
VENV=$DIR/venv
PROMTOOL=$DIR/promtool/promtool
GO=${GO:-go}

bash "$SCRIPT_DIR/install.sh" check >/dev/null 2>&1 || {
	echo "deploy-check: validators missing or out of date: run bash deploy/check/install.sh (make deploy-check does)" >&2
	exit 1
}
OUT=$(mktemp -d "$DIR/run.XXXXXX")
trap 'rm -rf "$OUT"' EXIT

now_ms() { date +%s%3N; }
step() {
	local name=$1
	shift
	local t0
	t0=$(now_ms)
	if ! "$@"; then
		echo "deploy-check: $name FAILED" >&2
		exit 1
	fi
	echo "deploy-check: $name ok ($(($(now_ms) - t0)) ms)"
}

compose() { "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$REPO/deploy/docker-compose.yml"; }
k8s() { "$VENV/bin/python" "$SCRIPT_DIR/k8s.py" "$REPO" "$OUT"; }
# Node resolves packages from the script's own directory: run a copy in this run's directory, which links the
# installed node_modules.
crds() {
	ln -s "$DIR/npm/node_modules" "$OUT/node_modules"
	cp "$SCRIPT_DIR/crds.mjs" "$OUT/crds.mjs"
	(cd "$OUT" && node crds.mjs "$OUT")
}
rules() {
	"$PROMTOOL" check rules "$OUT/signalstage.rules.yml"
	cp "$SCRIPT_DIR/alerts_test.yml" "$OUT/alerts_test.yml"
	(cd "$OUT" && "$PROMTOOL" test rules alerts_test.yml)
}
dashboards() {
	"$VENV/bin/python" - "$REPO"/deploy/dashboards/*.json <<'EOF'
import json, sys
bad = 0
for path in sys.argv[1:]:
    d = json.load(open(path))
    for key in ("title", "uid", "panels"):
        if key not in d:
            print(f"dashboards: {path}: no {key}", file=sys.stderr); bad += 1
    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))
    for p in panels(d.get("panels", [])):
        if p.get("type") != "row" and not any(t.get("expr") for t in p.get("targets", [])):
            print(f"dashboards: {path}: panel {p.get('title')!r} has no query", file=sys.stderr); bad += 1
    print(f"dashboards: {path}: {sum(1 for _ in panels(d.get('panels', [])))} panels")
sys.exit(1 if bad else 0)
EOF
}
context() {
	"$VENV/bin/python" "$SCRIPT_DIR/context.py" "$REPO" "$OUT/context"
	# The Dockerfile's build stage: ENV CGO_ENABLED=0 GOFLAGS=-trimpath, then go build of the three commands.
	(cd "$OUT/context" && CGO_ENABLED=0 GOFLAGS="-trimpath -mod=readonly" GOPROXY=off GOWORK=off \
		"$GO" build -ldflags="-s -w" -o "$OUT/bin/" ./ingest/cmd/ingest ./processor/cmd/processor ./sink/cmd/sink)
	local f
	for f in ingest processor sink; do
		# Static: distroless/static has no libc.
		if command -v file >/dev/null && ! file "$OUT/bin/$f" | grep -q 'statically linked'; then
			echo "context: $f is not statically linked" >&2
			return 1
		fi
	done
	echo "context: built ingest, processor and sink from the context alone ($(du -sh "$OUT/bin" | cut -f1))"
}

if [[ ${1:-} == rules ]]; then
	k8s >&2
	cat "$OUT/signalstage.rules.yml"
	exit 0
fi
step compose compose
step k8s k8s
step crds crds
step rules rules
step dashboards dashboards
step context context
