#!/usr/bin/env bash
# testenv/run.sh (`make run`): the whole pipeline on this machine. Starts the real Kafka broker and ClickHouse
# server (testenv/services.sh), builds and starts ingest, processor and sink, prints where to send events and how
# to query them, and stops the three stages on Ctrl-C (the services keep running: `make down` stops them).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
CACHE=${SIGNALSTAGE_CACHE:-$REPO/.cache}
RUN=${SIGNALSTAGE_RUN_DIR:-$CACHE/run}
mkdir -p "$RUN" bin
INGEST_ADDR=${SIGNALSTAGE_INGEST_ADDR:-127.0.0.1:8080}
CONSOLE_ADDR=${SIGNALSTAGE_SINK_CONSOLE_ADDR:-127.0.0.1:8090}
# The console's admin token (kept across runs in the cache, so a browser's login survives a restart of the sink
# only until its session ends) and a fresh one-time login code for the link printed below.
if [ -z "${SIGNALSTAGE_SINK_CONSOLE_TOKEN:-}" ]; then
	[ -s "$RUN/console-token" ] || od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$RUN/console-token"
	SIGNALSTAGE_SINK_CONSOLE_TOKEN=$(cat "$RUN/console-token")
fi
LOGIN_CODE=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
pids=()

stop_stages() {
	trap - INT TERM EXIT
	[ ${#pids[@]} -eq 0 ] && return
	echo
	echo "stopping the stages (the services keep running; \`make down\` stops them)..."
	kill -TERM "${pids[@]}" 2>/dev/null || true
	wait "${pids[@]}" 2>/dev/null || true
	echo "stopped."
}
trap stop_stages EXIT
trap 'stop_stages; exit 0' INT TERM

if command -v java >/dev/null 2>&1; then
	bash testenv/services.sh up
else
	cat >&2 <<'WARN'
################################################################################
##  NO JAVA ON THIS MACHINE: the real Apache Kafka broker cannot start.       ##
##  `make run` falls back to an IN-MEMORY kfake broker on 127.0.0.1:9092.      ##
##  Nothing is durable and transactions are kfake's, not Kafka's.              ##
##  `make test` never does this: it needs Java 17 and the real broker.        ##
################################################################################
WARN
	bash testenv/services.sh up clickhouse
	go build -o bin/fakekafka ./testenv/cmd/fakekafka
	bin/fakekafka >"$RUN/fakekafka.log" 2>&1 &
	pids+=($!)
fi
eval "$(bash testenv/services.sh env)"

echo "building the stages..."
go build -o bin/ ./ingest/cmd/ingest ./processor/cmd/processor ./sink/cmd/sink

SIGNALSTAGE_SINK_CONSOLE_TOKEN=$SIGNALSTAGE_SINK_CONSOLE_TOKEN SIGNALSTAGE_SINK_CONSOLE_LOGIN_CODE=$LOGIN_CODE \
	bin/sink -console-addr "$CONSOLE_ADDR" -instance-id run-sink \
	-console-metrics "ingest=http://${SIGNALSTAGE_INGEST_ADMIN_ADDR:-127.0.0.1:9101}/metrics,processor=http://${SIGNALSTAGE_PROCESSOR_ADMIN_ADDR:-127.0.0.1:9102}/metrics,sink=http://${SIGNALSTAGE_SINK_METRICS_ADDR:-127.0.0.1:9103}/metrics" \
	>"$RUN/sink.log" 2>&1 &
pids+=($!)
# Static membership (-instance-id, the sink's above too): after a crash, the restarted processor rejoins as itself
# and takes its partitions back at once instead of waiting for the group to expire its predecessor.
bin/processor -state-dir "$RUN/processor-state" -instance-id run-processor >"$RUN/processor.log" 2>&1 &
pids+=($!)
bin/ingest -addr "$INGEST_ADDR" -keys testenv/dev-keys.json >"$RUN/ingest.log" 2>&1 &
pids+=($!)

# Running means every stage is ready: ingest accepts events, the processor has joined its group and restored its
# partitions, the sink is loading, in its group, and reaches Kafka and ClickHouse. Until then, say who waits.
declare -A readyz=([ingest]="http://${SIGNALSTAGE_INGEST_ADMIN_ADDR:-127.0.0.1:9101}/readyz" [processor]="http://127.0.0.1:9102/readyz" [sink]="http://127.0.0.1:9103/readyz")
start=$(date +%s)
for stage in ingest processor sink; do
	last=0
	until curl -sf -m 2 "${readyz[$stage]}" >/dev/null 2>&1; do
		for pid in "${pids[@]}"; do
			if ! kill -0 "$pid" 2>/dev/null; then
				echo "a stage exited while starting; last lines of its log:" >&2
				tail -20 "$RUN/$stage.log" >&2
				exit 1
			fi
		done
		now=$(date +%s)
		if [ $((now - start)) -ge 180 ]; then
			echo "$stage did not become ready in 180 s: $(curl -s -m 2 "${readyz[$stage]}" 2>&1); last lines of $RUN/$stage.log:" >&2
			tail -20 "$RUN/$stage.log" >&2
			exit 1
		fi
		if [ $((now - last)) -ge 5 ]; then
			echo "waiting for the $stage to be ready ($((now - start)) s): $(curl -s -m 2 "${readyz[$stage]}" 2>&1 | head -c 200)"
			last=$now
		fi
		sleep 0.2
	done
done
echo "every stage ready in $(($(date +%s) - start)) s"

for _ in $(seq 1 60); do
	curl -sf -o /dev/null "http://$CONSOLE_ADDR/login" && break
	sleep 0.5
done

URL="http://$INGEST_ADDR/api/signal-staging/webhook/dev-key"
cat <<EOT

signalstage is running.

Console: http://$CONSOLE_ADDR/login/once?code=$LOGIN_CODE
  (a one-time login link that lands on the Signal Queue; afterwards log in with the admin token in
  $RUN/console-token unless SIGNALSTAGE_SINK_CONSOLE_TOKEN is set)

  Webhook URL (Segment "Webhooks (Actions)" destination, dev key from testenv/dev-keys.json):
    $URL

  Send a Segment track event:
    curl -s -X POST '$URL' -H 'Content-Type: application/json' \\
      -d '{"type":"track","event":"Demo Requested","anonymousId":"anon-1","messageId":"m-1","properties":{"form_name":"demo"}}'

  See it in ClickHouse (within a few seconds):
    curl -s '$SIGNALSTAGE_CLICKHOUSE_HTTP' --data-binary "SELECT tenant, event, status, anonymous_id, email, received_at FROM signalstage.signals FINAL ORDER BY received_at DESC LIMIT 10 FORMAT PrettyCompact"

  Logs:    $RUN/ingest.log  $RUN/processor.log  $RUN/sink.log
           services: make status
  Metrics: http://127.0.0.1:9101/metrics (ingest -admin-addr)  http://127.0.0.1:9102/metrics  http://127.0.0.1:9103/metrics

Ctrl-C stops the three stages.
EOT

# Stop everything when any stage dies, and say which.
set +e
wait -n "${pids[@]}"
echo "a stage exited; see the logs above" >&2
exit 1
