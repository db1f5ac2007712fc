#!/usr/bin/env bash
# shellcheck disable=SC2034 # the <service>_* variables are read indirectly (${!v}) by wait_ready and cmd_up
# testenv/services.sh: a REAL Apache Kafka broker and a REAL ClickHouse server for tests and `make run`,
# on loopback, no Docker, no systemd (see /work/shared/DESIGN.md, "Real services, everywhere").
#
#   services.sh up [kafka|clickhouse]       install if needed, start (or reuse), wait until ready
#   services.sh down [kafka|clickhouse]     stop what this script started (data caches stay)
#   services.sh status                      running/stopped, pid, address, ready, log file
#   services.sh env                         shell exports: eval "$(testenv/services.sh env)"
#   services.sh install [kafka|clickhouse]  only install (Kafka jars via mvn, clickhouse-server via apt-get)
#   services.sh logs                        print the log file paths
#
# Kafka: Apache Kafka from Maven Central (testenv/kafka/pom.xml), KRaft combined broker+controller,
# node.id=1, run with the machine's Java 17. ClickHouse: Debian's clickhouse-server package, run with
# our own config (testenv/clickhouse/*.xml) as a background process.
#
# Everything generated lives under ${SIGNALSTAGE_CACHE:-<repo>/.cache}:
#   m2/                       Maven repository used to fetch the Kafka jars
#   bin/kafkaready            readiness probe built from testenv/cmd/kafkaready
#   kafka/libs/               Kafka + log4j2 jars (.pom-sha256 records which pom.xml fetched them)
#   kafka/config/             generated server.properties and log4j2.properties
#   kafka/cluster-id          KRaft cluster id, generated once
#   kafka/data/               log.dirs (topic data and the KRaft metadata log)
#   kafka/logs/               server.log (broker log4j2 log), stdout.log (JVM stdout/stderr), mvn.log
#   kafka/kafka.pid
#   clickhouse/etc/           rendered config.xml and users.xml
#   clickhouse/data/ tmp/ user_files/ format_schemas/
#   clickhouse/logs/          clickhouse-server.log, clickhouse-server.err.log, stdout.log
#   clickhouse/clickhouse.pid
#
# Environment overrides (defaults in brackets):
#   SIGNALSTAGE_CACHE [<repo>/.cache]            SIGNALSTAGE_READY_TIMEOUT [90] seconds
#   SIGNALSTAGE_KAFKA_PORT [9092]                SIGNALSTAGE_KAFKA_CONTROLLER_PORT [9093]
#   SIGNALSTAGE_CLICKHOUSE_PORT [9000]           SIGNALSTAGE_CLICKHOUSE_HTTP_PORT [8123]
#   SIGNALSTAGE_STOP_TIMEOUT [20] seconds        SIGNALSTAGE_KAFKA_JAVA_OPTS [-Xms256m -Xmx1g]
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
CACHE=${SIGNALSTAGE_CACHE:-$REPO/.cache}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)

HOST=127.0.0.1
KAFKA_PORT=${SIGNALSTAGE_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${SIGNALSTAGE_KAFKA_CONTROLLER_PORT:-9093}
CH_TCP_PORT=${SIGNALSTAGE_CLICKHOUSE_PORT:-9000}
CH_HTTP_PORT=${SIGNALSTAGE_CLICKHOUSE_HTTP_PORT:-8123}
READY_TIMEOUT=${SIGNALSTAGE_READY_TIMEOUT:-90}
STOP_TIMEOUT=${SIGNALSTAGE_STOP_TIMEOUT:-20}
KAFKA_JAVA_OPTS=${SIGNALSTAGE_KAFKA_JAVA_OPTS:--Xms256m -Xmx1g}

KAFKA_POM=$SCRIPT_DIR/kafka/pom.xml
KAFKA_DIR=$CACHE/kafka
KAFKA_LIBS=$KAFKA_DIR/libs
KAFKA_CONF=$KAFKA_DIR/config/server.properties
KAFKA_LOG4J=$KAFKA_DIR/config/log4j2.properties
KAFKA_DATA=$KAFKA_DIR/data
KAFKA_LOGDIR=$KAFKA_DIR/logs
KAFKA_LOG=$KAFKA_LOGDIR/server.log
KAFKA_OUT=$KAFKA_LOGDIR/stdout.log
KAFKA_PID=$KAFKA_DIR/kafka.pid
KAFKA_CLUSTER_ID=$KAFKA_DIR/cluster-id
KAFKAREADY_SRC=$SCRIPT_DIR/cmd/kafkaready
KAFKAREADY=$CACHE/bin/kafkaready

CH_TEMPLATES=$SCRIPT_DIR/clickhouse
CH_DIR=$CACHE/clickhouse
CH_CONF=$CH_DIR/etc/config.xml
CH_LOGDIR=$CH_DIR/logs
CH_LOG=$CH_LOGDIR/clickhouse-server.log
CH_ERRLOG=$CH_LOGDIR/clickhouse-server.err.log
CH_OUT=$CH_LOGDIR/stdout.log
CH_PID=$CH_DIR/clickhouse.pid

# Per-service tables used by wait_ready (<name>_T0 is set when up launches or adopts the process).
kafka_PIDFILE=$KAFKA_PID kafka_MARKER=$KAFKA_CONF kafka_T0=""
kafka_LOGS=("$KAFKA_LOG" "$KAFKA_OUT")
clickhouse_PIDFILE=$CH_PID clickhouse_MARKER=$CH_CONF clickhouse_T0=""
clickhouse_LOGS=("$CH_LOG" "$CH_OUT" "$CH_ERRLOG")

log() { printf 'services: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

now_ms() { local t=${EPOCHREALTIME//[.,]/}; echo $((t / 1000)); }
since() { local d=$(($(now_ms) - $1)); printf '%d.%01ds' $((d / 1000)) $((d % 1000 / 100)); }

as_root() {
	if [[ $EUID -eq 0 ]]; then "$@"
	elif have sudo; then sudo -n "$@"
	else die "need root (or sudo) to run: $*"
	fi
}

# --- processes and ports -------------------------------------------------------------------------------

# pid_of PIDFILE MARKER: prints the pid recorded in PIDFILE if that process is alive and its command line
# contains MARKER (our generated config path), so a recycled pid is never mistaken for our server.
pid_of() {
	local pid cmd
	[[ -s $1 ]] || return 1
	pid=$(<"$1")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
	[[ $cmd == *"$2"* ]] || return 1 # a zombie's command line is empty
	echo "$pid"
}

cmdline_of() {
	local c
	c=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true)
	((${#c} <= 300)) || c="${c:0:150} ... ${c: -140}"
	echo "$c"
}

tcp_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# port_owner PORT: prints who listens on PORT (any address) and returns 0, or returns 1 when it is free.
port_owner() {
	local port=$1 line pid
	if have ss; then
		line=$(ss -Hltnp "sport = :$port" 2>/dev/null | head -n1)
		[[ -n $line ]] || return 1
		pid=$(grep -o 'pid=[0-9]*' <<<"$line" | head -n1 | cut -d= -f2)
		if [[ -n $pid ]]; then
			echo "pid $pid: $(cmdline_of "$pid")"
		else
			echo "$(awk '{print $4}' <<<"$line") (process not visible to this user)"
		fi
		return 0
	fi
	if tcp_open "$port"; then
		echo "unknown process (install iproute2 'ss' to see which)"
		return 0
	fi
	return 1
}

# check_ports NAME PORT...: fails at once when a port is held by anything (called only when our service
# is not running, so whatever holds the port is not ours).
check_ports() {
	local name=$1 port owner bad=0
	shift
	for port in "$@"; do
		if owner=$(port_owner "$port"); then
			log "ERROR: $name cannot start: port $port is already in use by a process that is not ours: $owner"
			bad=1
		fi
	done
	((bad == 0)) || die "free the port(s) above (or set the SIGNALSTAGE_*_PORT overrides) and retry"
}

# LOG_OFFSET[file] is the size of a log when this run launched its server, so failures show only new lines.
declare -A LOG_OFFSET=()

mark_logs() {
	local f
	for f in "$@"; do LOG_OFFSET[$f]=$(stat -c %s "$f" 2>/dev/null || echo 0); done
}

show_tail() {
	local f off
	for f in "$@"; do
		[[ -s $f ]] || continue
		off=${LOG_OFFSET[$f]:-0}
		(($(stat -c %s "$f") >= off)) || off=0 # rotated since
		if (($(stat -c %s "$f") == off)); then
			printf -- '----- %s: nothing new since the start -----\n' "$f" >&2
			continue
		fi
		printf -- '----- last 30 lines of %s -----\n' "$f" >&2
		tail -c "+$((off + 1))" "$f" | tail -n 30 >&2
	done
}

# stop_pid NAME PIDFILE MARKER: SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL; removes the pid file.
stop_pid() {
	local name=$1 pidfile=$2 marker=$3 pid t0 deadline
	if ! pid=$(pid_of "$pidfile" "$marker"); then
		[[ -e $pidfile ]] && log "$name: not running (removing stale pid file)"
		[[ -e $pidfile ]] || log "$name: not running"
		rm -f "$pidfile"
		return 0
	fi
	t0=$(now_ms)
	kill -TERM "$pid" 2>/dev/null || true
	deadline=$((SECONDS + STOP_TIMEOUT))
	while pid_of "$pidfile" "$marker" >/dev/null; do
		if ((SECONDS >= deadline)); then
			log "$name: pid $pid still alive after ${STOP_TIMEOUT}s, sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			sleep 0.5
			break
		fi
		sleep 0.2
	done
	rm -f "$pidfile"
	log "$name: stopped pid $pid in $(since "$t0")"
}

# launch PIDFILE MARKER OUTFILE CMD...: starts CMD in its own session, detached from this shell (stdin from
# /dev/null, stdout/stderr appended to OUTFILE, lock fd closed), and records its pid.
launch() {
	local pidfile=$1 marker=$2 out=$3 pid
	shift 3
	printf '\n===== %s starting: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$out"
	(exec setsid nohup "$@" </dev/null >>"$out" 2>&1 9>&-) &
	pid=$!
	echo "$pid" >"$pidfile"
	# $! is the server itself (setsid/nohup exec in place); fall back to a search if it is not.
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		pid_of "$pidfile" "$marker" >/dev/null && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if have pgrep && pid=$(pgrep -n -f -- "$marker"); then echo "$pid" >"$pidfile"; fi
}

# wait_ready NAME...: polls every named service's probe (ready_<name>) at the same time until each one
# answers. A service whose process dies fails at once; one not ready after READY_TIMEOUT is stopped.
# Either failure prints the service's log tails and exits non-zero. Each service's start time is <name>_T0.
wait_ready() {
	local pending=("$@") left name pidfile marker t0 logs v deadline=$((SECONDS + READY_TIMEOUT))
	while ((${#pending[@]} > 0)); do
		left=()
		for name in "${pending[@]}"; do
			v=${name}_PIDFILE pidfile=${!v}
			v=${name}_MARKER marker=${!v}
			v=${name}_T0 t0=${!v}
			v="${name}_LOGS[@]" logs=("${!v}")
			if ! pid_of "$pidfile" "$marker" >/dev/null; then
				log "ERROR: $name exited during startup"
				show_tail "${logs[@]}"
				rm -f "$pidfile"
				exit 1
			elif "probe_$name"; then
				log "$name: ready in $(since "$t0") (pid $(<"$pidfile"), log ${logs[0]})"
			elif ((SECONDS >= deadline)); then
				log "ERROR: $name not ready after ${READY_TIMEOUT}s, stopping it"
				show_tail "${logs[@]}"
				stop_pid "$name" "$pidfile" "$marker"
				exit 1
			else
				left+=("$name")
			fi
		done
		pending=("${left[@]+"${left[@]}"}")
		((${#pending[@]} == 0)) || sleep 0.2
	done
}

# --- Kafka ---------------------------------------------------------------------------------------------

java_ok() {
	have java || return 1
	local v
	v=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
	[[ -n $v && $v -ge 17 ]]
}

install_kafka() {
	java_ok || die "Kafka 4.x needs Java 17+ ('java' on PATH); found: $(java -version 2>&1 | head -n1 || echo none)"
	local want
	want=$(sha256sum "$KAFKA_POM" | cut -d' ' -f1)
	if [[ -s $KAFKA_LIBS/.pom-sha256 && $(<"$KAFKA_LIBS/.pom-sha256") == "$want" ]] &&
		compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" >/dev/null; then
		:
	elif pid_of "$KAFKA_PID" "$KAFKA_CONF" >/dev/null; then
		log "kafka: $KAFKA_POM changed but the broker is running; run 'down kafka' then 'up' to refetch the jars"
	else
		have mvn || die "Maven ('mvn') is needed to fetch the Kafka jars from Maven Central"
		local t0
		t0=$(now_ms)
		log "kafka: fetching jars from Maven Central into $KAFKA_LIBS ..."
		rm -rf "$KAFKA_LIBS"
		mkdir -p "$KAFKA_LOGDIR"
		if ! mvn -q -B -Dstyle.color=never -f "$KAFKA_POM" -Dmaven.repo.local="$CACHE/m2" \
			dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS" \
			>"$KAFKA_LOGDIR/mvn.log" 2>&1 9>&-; then
			show_tail "$KAFKA_LOGDIR/mvn.log"
			die "mvn could not fetch the Kafka jars (full output: $KAFKA_LOGDIR/mvn.log)"
		fi
		compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" >/dev/null || die "mvn ran but $KAFKA_LIBS has no kafka_2.13 jar"
		echo "$want" >"$KAFKA_LIBS/.pom-sha256"
		log "kafka: jars fetched in $(since "$t0")"
	fi
	build_kafkaready
}

# build_kafkaready compiles the readiness probe once (again only when its source or go.mod/go.sum change).
build_kafkaready() {
	if [[ -x $KAFKAREADY && $KAFKAREADY -nt $KAFKAREADY_SRC/main.go && $KAFKAREADY -nt $REPO/go.mod &&
		$KAFKAREADY -nt $REPO/go.sum ]]; then
		return 0
	fi
	if ! have go; then
		log "WARNING: no 'go' on PATH: Kafka readiness falls back to a TCP port check"
		return 0
	fi
	mkdir -p "$CACHE/bin"
	if ! (cd "$REPO" && go build -buildvcs=false -o "$KAFKAREADY.tmp" ./testenv/cmd/kafkaready 9>&-); then
		rm -f "$KAFKAREADY.tmp"
		log "WARNING: could not build testenv/cmd/kafkaready: Kafka readiness falls back to a TCP port check"
		return 0
	fi
	mv -f "$KAFKAREADY.tmp" "$KAFKAREADY"
}

write_kafka_config() {
	mkdir -p "$KAFKA_DIR/config" "$KAFKA_DATA" "$KAFKA_LOGDIR"
	cat >"$KAFKA_CONF.tmp" <<EOF
# Generated by testenv/services.sh; edits are overwritten on the next 'up'.
# Single-node KRaft: this process is both the broker and the (only) controller.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$KAFKA_DATA

# One replica of everything.
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Few internal partitions: creating and loading __consumer_offsets / __transaction_state takes a moment
# instead of seconds on first start and on every restart.
offsets.topic.num.partitions=4
transaction.state.log.num.partitions=4
share.coordinator.state.topic.num.partitions=4
# After an unclean stop (SIGKILL, crash) the restarted broker cannot register until the controller expires
# the old incarnation's session: 4 s instead of the default 9 s. Heartbeats stay on loopback in-process.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=4000
# Tests create their topics explicitly and must not wait for rebalances.
auto.create.topics.enable=false
delete.topic.enable=true
group.initial.rebalance.delay.ms=0
# Test data does not need to live long.
log.retention.hours=24
EOF
	mv -f "$KAFKA_CONF.tmp" "$KAFKA_CONF"
	cat >"$KAFKA_LOG4J" <<EOF
# Generated by testenv/services.sh: broker log4j2 config, INFO to $KAFKA_LOG.
status = warn
name = signalstage-kafka
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = $KAFKA_LOG
appender.file.filePattern = $KAFKA_LOG.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
EOF
}

kafka_java() { java -Dlog4j2.configurationFile="$KAFKA_LOG4J" -cp "$KAFKA_LIBS/*" "$@"; }

# format_kafka_storage formats log.dirs once, with a cluster id generated once and kept in the cache.
format_kafka_storage() {
	[[ -f $KAFKA_DATA/meta.properties ]] && return 0
	local cid=""
	[[ -s $KAFKA_CLUSTER_ID ]] && cid=$(<"$KAFKA_CLUSTER_ID")
	if [[ -z $cid ]]; then
		cid=$(kafka_java kafka.tools.StorageTool random-uuid 9>&- 2>>"$KAFKA_OUT" | tail -n1)
		[[ -n $cid ]] || die "kafka: StorageTool random-uuid printed nothing (see $KAFKA_OUT)"
		echo "$cid" >"$KAFKA_CLUSTER_ID"
	fi
	log "kafka: formatting $KAFKA_DATA (cluster id $cid)"
	kafka_java kafka.tools.StorageTool format -t "$cid" -c "$KAFKA_CONF" --ignore-formatted \
		>>"$KAFKA_OUT" 2>&1 9>&- || { show_tail "$KAFKA_OUT" "$KAFKA_LOG"; die "kafka: storage format failed"; }
}

probe_kafka() {
	tcp_open "$KAFKA_PORT" || return 1
	if [[ -x $KAFKAREADY ]]; then
		"$KAFKAREADY" -brokers "$HOST:$KAFKA_PORT" -timeout 2s -attempt 1s -q 2>/dev/null
	fi
}

kafka_ready_now() {
	tcp_open "$KAFKA_PORT" || return 1
	[[ -x $KAFKAREADY ]] || return 0
	"$KAFKAREADY" -brokers "$HOST:$KAFKA_PORT" -timeout 3s -attempt 2s -coordinators=false -q 2>/dev/null
}

# preflight_kafka fails at once when ours is not running and a port it needs is taken.
preflight_kafka() {
	pid_of "$KAFKA_PID" "$KAFKA_CONF" >/dev/null || check_ports kafka "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"
}

# start_kafka launches the broker unless ours already runs; sets kafka_T0 when it launched one.
start_kafka() {
	kafka_T0=""
	if pid_of "$KAFKA_PID" "$KAFKA_CONF" >/dev/null; then return 0; fi
	rm -f "$KAFKA_PID"
	kafka_T0=$(now_ms)
	mark_logs "${kafka_LOGS[@]}"
	write_kafka_config
	format_kafka_storage
	# shellcheck disable=SC2086 # KAFKA_JAVA_OPTS is a list of JVM flags
	launch "$KAFKA_PID" "$KAFKA_CONF" "$KAFKA_OUT" \
		java $KAFKA_JAVA_OPTS -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
		-Dlog4j2.configurationFile="$KAFKA_LOG4J" -Dkafka.logs.dir="$KAFKA_LOGDIR" \
		-cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_CONF"
	log "kafka: started pid $(<"$KAFKA_PID") on $HOST:$KAFKA_PORT (controller $HOST:$KAFKA_CONTROLLER_PORT)"
}

# --- ClickHouse ----------------------------------------------------------------------------------------

# ch_cmd sets CH_CMD to the server command line (split Debian package or single binary).
ch_cmd() {
	local c
	for c in clickhouse-server /usr/sbin/clickhouse-server /usr/bin/clickhouse-server; do
		if [[ $c == */* && -x $c ]] || { [[ $c != */* ]] && have "$c"; }; then
			CH_CMD=("$(command -v "$c" || echo "$c")")
			return 0
		fi
	done
	for c in clickhouse /usr/bin/clickhouse; do
		if [[ $c == */* && -x $c ]] || { [[ $c != */* ]] && have "$c"; }; then
			CH_CMD=("$(command -v "$c" || echo "$c")" server)
			return 0
		fi
	done
	return 1
}

# system_ch_pids: clickhouse servers run with the package's own config (e.g. started by the package's
# postinst through invoke-rc.d), which would hold ports 9000/8123.
system_ch_pids() {
	if have pgrep; then pgrep -f -- '/etc/clickhouse-server/config.xml' || true; fi
}

install_clickhouse() {
	ch_cmd && return 0
	have apt-get || die "clickhouse-server is not installed and there is no apt-get to install it"
	local t0 before pid
	t0=$(now_ms)
	before=$(system_ch_pids)
	log "clickhouse: installing Debian packages clickhouse-server clickhouse-client ..."
	if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q clickhouse-server clickhouse-client >&2 9>&-; then
		log "clickhouse: install failed, running apt-get update and retrying"
		as_root apt-get update -q >&2 9>&- || true
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q clickhouse-server clickhouse-client >&2 9>&- ||
			die "apt-get could not install clickhouse-server"
	fi
	# The package's postinst may start a system server on our ports; stop only one it just started.
	for pid in $(system_ch_pids); do
		grep -qx "$pid" <<<"$before" && continue
		log "clickhouse: stopping the system server (pid $pid) that the package install started"
		as_root /etc/init.d/clickhouse-server stop >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
	done
	ch_cmd || die "clickhouse-server installed but no server binary found"
	log "clickhouse: installed in $(since "$t0")"
}

write_clickhouse_config() {
	mkdir -p "$CH_DIR/etc" "$CH_DIR/data" "$CH_DIR/tmp" "$CH_DIR/user_files" "$CH_DIR/format_schemas" "$CH_LOGDIR"
	sed -e "s|@CH_DIR@|$CH_DIR|g" -e "s|@LISTEN_HOST@|$HOST|g" \
		-e "s|@TCP_PORT@|$CH_TCP_PORT|g" -e "s|@HTTP_PORT@|$CH_HTTP_PORT|g" \
		"$CH_TEMPLATES/config.xml" >"$CH_CONF.tmp"
	mv -f "$CH_CONF.tmp" "$CH_CONF"
	cp -f "$CH_TEMPLATES/users.xml" "$CH_DIR/etc/users.xml"
}

probe_clickhouse() {
	if have curl; then
		[[ $(curl -sf --max-time 2 "http://$HOST:$CH_HTTP_PORT/?query=SELECT%201" 2>/dev/null) == 1 ]]
	else
		[[ $(clickhouse-client --host "$HOST" --port "$CH_TCP_PORT" --query 'SELECT 1' 2>/dev/null) == 1 ]]
	fi
}

preflight_clickhouse() {
	pid_of "$CH_PID" "$CH_CONF" >/dev/null || check_ports clickhouse "$CH_TCP_PORT" "$CH_HTTP_PORT"
}

# start_clickhouse launches the server unless ours already runs; sets clickhouse_T0 when it launched.
start_clickhouse() {
	clickhouse_T0=""
	if pid_of "$CH_PID" "$CH_CONF" >/dev/null; then return 0; fi
	rm -f "$CH_PID"
	clickhouse_T0=$(now_ms)
	mark_logs "${clickhouse_LOGS[@]}"
	write_clickhouse_config
	ch_cmd || die "clickhouse-server not installed (run: $0 install clickhouse)"
	launch "$CH_PID" "$CH_CONF" "$CH_OUT" "${CH_CMD[@]}" --config-file="$CH_CONF"
	log "clickhouse: started pid $(<"$CH_PID") on $HOST:$CH_TCP_PORT (http $HOST:$CH_HTTP_PORT)"
}

# --- subcommands ---------------------------------------------------------------------------------------

lock() {
	have flock || return 0
	exec 9>"$CACHE/services.lock"
	flock -w 600 9 || die "another services.sh holds $CACHE/services.lock"
}

targets() {
	case "${1:-all}" in
	all | "") echo "kafka clickhouse" ;;
	kafka | clickhouse) echo "$1" ;;
	*) die "unknown service '$1' (kafka or clickhouse)" ;;
	esac
}

cmd_install() {
	local s
	for s in $(targets "${1:-}"); do "install_$s"; done
}

cmd_up() {
	local s want t0
	want=$(targets "${1:-}")
	t0=$(now_ms)
	for s in $want; do "install_$s"; done
	for s in $want; do "preflight_$s"; done
	# Launch what is not running (both start in parallel), then wait for all of them together.
	for s in $want; do "start_$s"; done
	local waiting=()
	for s in $want; do
		local v=${s}_T0 pidfile=${s}_PIDFILE
		if [[ -n ${!v} ]]; then
			waiting+=("$s")
		elif "probe_$s"; then
			log "$s: already running (pid $(<"${!pidfile}")), ready"
		else
			log "$s: already running (pid $(<"${!pidfile}")) but not ready yet, waiting"
			printf -v "$v" '%s' "$(now_ms)"
			waiting+=("$s")
		fi
	done
	((${#waiting[@]} == 0)) || wait_ready "${waiting[@]}"
	[[ -x $KAFKAREADY || " $want " != *" kafka "* ]] ||
		log "WARNING: kafka readiness was only a TCP check (no kafkaready probe)"
	log "up: done in $(since "$t0")"
}

cmd_down() {
	local s
	for s in $(targets "${1:-}"); do
		case $s in
		kafka) stop_pid kafka "$KAFKA_PID" "$KAFKA_CONF" ;;
		clickhouse) stop_pid clickhouse "$CH_PID" "$CH_CONF" ;;
		esac
	done
}

status_line() {
	local name=$1 pidfile=$2 marker=$3 probe=$4 addr=$5 logf=$6 pid ready=no state=stopped
	if pid=$(pid_of "$pidfile" "$marker"); then
		state=running
		"$probe" && ready=yes
	else
		pid=-
	fi
	printf '%-11s %-8s pid=%-8s addr=%-40s ready=%-3s log=%s\n' "$name" "$state" "$pid" "$addr" "$ready" "$logf"
}

cmd_status() {
	status_line kafka "$KAFKA_PID" "$KAFKA_CONF" kafka_ready_now \
		"$HOST:$KAFKA_PORT" "$KAFKA_LOG"
	status_line clickhouse "$CH_PID" "$CH_CONF" probe_clickhouse \
		"$HOST:$CH_TCP_PORT,http://$HOST:$CH_HTTP_PORT" "$CH_LOG"
}

cmd_env() {
	echo "export SIGNALSTAGE_KAFKA_BROKERS=$HOST:$KAFKA_PORT"
	echo "export SIGNALSTAGE_CLICKHOUSE_ADDR=$HOST:$CH_TCP_PORT"
	echo "export SIGNALSTAGE_CLICKHOUSE_HTTP=http://$HOST:$CH_HTTP_PORT"
}

cmd_logs() {
	echo "kafka      $KAFKA_LOG"
	echo "kafka      $KAFKA_OUT"
	echo "clickhouse $CH_LOG"
	echo "clickhouse $CH_ERRLOG"
	echo "clickhouse $CH_OUT"
}

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

main() {
	local cmd=${1:-}
	shift || true
	case $cmd in
	up) lock; cmd_up "$@" ;;
	down) lock; cmd_down "$@" ;;
	install) lock; cmd_install "$@" ;;
	status) cmd_status ;;
	env) cmd_env ;;
	logs) cmd_logs ;;
	-h | --help | help) usage ;;
	*) usage >&2; exit 2 ;;
	esac
}

main "$@"
