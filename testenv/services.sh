#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR # the services.d/ files are sourced from beside this script
# testenv/services.sh: REAL Apache Kafka, ClickHouse and ZooKeeper servers for tests and `make run`, on loopback,
# no Docker, no systemd (the design's "Real services, everywhere").
#
#   services.sh up [TARGET...]      install if needed, start (or reuse), wait until ready
#   services.sh down [TARGET...]    stop what this script started: SIGTERM, then SIGKILL after a timeout (data stays)
#   services.sh kill UNIT...        SIGKILL (fault tests), waits until the process is gone
#   services.sh status [TARGET...]  running/stopped, pid, address, ready, log file
#   services.sh env                 shell exports: eval "$(testenv/services.sh env)"
#   services.sh install [TARGET...] only install (Kafka/ZooKeeper jars via mvn, clickhouse-server via apt-get,
#                                   the registry built by mvn)
#   services.sh logs [TARGET...]    print the log file paths
#
# TARGET is a unit or a group of units (default: kafka clickhouse):
#   kafka                the single broker+controller (127.0.0.1:9092, controller 9093)
#   clickhouse           the single ClickHouse server (127.0.0.1:9000 native, 8123 HTTP)
#   kafka-cluster        kafka-controller-{1,2,3} (KRaft quorum, 29191-29193) and kafka-broker-{1,2,3}
#                        (node ids 1-3, 127.0.0.1:29091-29093); RF 3 and min.insync.replicas 2 by default
#   clickhouse-cluster   zookeeper (127.0.0.1:29181) and clickhouse-s{1,2}r{1,2}: 2 shards x 2 replicas, cluster
#                        'signalstage' (native 29001-29004, HTTP 29101-29104, interserver 29201-29204, in the
#                        order s1r1 s1r2 s2r1 s2r2)
#   clusters             kafka-cluster and clickhouse-cluster
#   registry             a Schema Registry (Apicurio Registry 2.4.2, Confluent-compatible API at
#                        http://127.0.0.1:8081/apis/ccompat/v7), schemas in memory; built from Maven Central jars
#                        (testenv/registry/) on the first 'up'
# `status` without a target also lists the cluster units that were ever started.
#
# Kafka: Apache Kafka from Maven Central (testenv/kafka/pom.xml), KRaft, run with the machine's Java 17 and a
# class-data-sharing archive of its classes made once (starts take half the time). ClickHouse: Debian's
# clickhouse-server package, run with our own config (testenv/clickhouse/*.xml, plus
# testenv/clickhouse-cluster/cluster.xml for cluster nodes) as a background process. ZooKeeper: Apache ZooKeeper
# from Maven Central (testenv/zookeeper/pom.xml), standalone.
#
# Everything generated lives under ${SIGNALSTAGE_CACHE:-<repo>/.cache}:
#   m2/                       Maven repository used to fetch the jars
#   bin/kafkaready-<hash>     readiness probe built from testenv/cmd/kafkaready (hash of its source and go.sum)
#   kafka/libs/               Kafka + log4j2 jars (.pom-sha256 records which pom.xml fetched them)
#   kafka/cds/                the class-data-sharing archive of the Kafka jars
#   kafka/                    the single broker: config/ (server.properties, log4j2.properties), cluster-id,
#                             data/ (log.dirs), logs/ (server.log, stdout.log, mvn.log), kafka.pid
#   kafka-cluster/            cluster-id; controller-N/ and broker-N/, each laid out like kafka/
#   private/kafka-*/          brokers of single tests (testenv.NewPrivateKafka), laid out like kafka/
#   clickhouse/               etc/ (config.xml, users.xml), data/ tmp/ user_files/ format_schemas/, logs/
#                             (clickhouse-server.log, clickhouse-server.err.log, stdout.log), clickhouse.pid
#   clickhouse-cluster/sXrY/  each cluster node laid out like clickhouse/, plus etc/config.d/cluster.xml
#   zookeeper/                libs/, config/ (zoo.cfg, log4j2.properties), data/, logs/, zookeeper.pid
#   registry/                 build/ (mvn output, the runnable registry-server/, mvn.log), logs/ (registry.log,
#                             stdout.log), registry.pid
#
# Environment overrides (defaults in brackets):
#   SIGNALSTAGE_CACHE [<repo>/.cache]            SIGNALSTAGE_READY_TIMEOUT [90] seconds
#   SIGNALSTAGE_KAFKA_PORT [9092]                SIGNALSTAGE_KAFKA_CONTROLLER_PORT [9093]
#   SIGNALSTAGE_CLICKHOUSE_PORT [9000]           SIGNALSTAGE_CLICKHOUSE_HTTP_PORT [8123]
#   SIGNALSTAGE_STOP_TIMEOUT [20] seconds        SIGNALSTAGE_KAFKA_JAVA_OPTS [-Xms256m -Xmx1g]
#   SIGNALSTAGE_KAFKA_DIR [<cache>/kafka]        another single broker in its own directory (with other ports)
#   SIGNALSTAGE_KAFKA_SASL_SSL_PORT [none]       also a SASL_SSL listener on the single broker; its settings come
#                                                from <dir>/config/extra.properties, SCRAM users from
#                                                <dir>/config/scram-credentials (one --add-scram value a line)
#   SIGNALSTAGE_KAFKA_CLUSTER_PORT [29091]       first cluster broker; the others follow
#   SIGNALSTAGE_KAFKA_CLUSTER_CONTROLLER_PORT [29191]
#   SIGNALSTAGE_KAFKA_CLUSTER_JAVA_OPTS [-Xms128m -Xmx512m]   each cluster broker
#   SIGNALSTAGE_KAFKA_CONTROLLER_JAVA_OPTS [-Xms32m -Xmx128m -XX:TieredStopAtLevel=1]   each cluster controller
#   SIGNALSTAGE_CLICKHOUSE_CLUSTER_PORT [29001]  native port of s1r1; +100 HTTP, +200 interserver; then s1r2 ...
#   SIGNALSTAGE_ZOOKEEPER_PORT [29181]           SIGNALSTAGE_ZOOKEEPER_JAVA_OPTS [-Xms32m -Xmx256m]
#   SIGNALSTAGE_REGISTRY_PORT [8081]             SIGNALSTAGE_REGISTRY_JAVA_OPTS [-Xms64m -Xmx256m]
#   SIGNALSTAGE_OWNER_PID [none]                 servers started by this call are SIGKILLed when that process
#                                                exits (tests: a crashed test leaves no server behind)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
CACHE=${SIGNALSTAGE_CACHE:-$REPO/.cache}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)

HOST=127.0.0.1
READY_TIMEOUT=${SIGNALSTAGE_READY_TIMEOUT:-90}
STOP_TIMEOUT=${SIGNALSTAGE_STOP_TIMEOUT:-20}
OWNER_PID=${SIGNALSTAGE_OWNER_PID:-}

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

# --- locks ---------------------------------------------------------------------------------------------
# Each group of units has its own lock file, so a test starting its private broker never waits for `make up`.
# LOCK_FDS are closed in every child (a server that inherited one would hold the lock for its lifetime).

LOCK_FDS=()

take_lock() {
	have flock || return 0
	local fd
	mkdir -p "$(dirname "$1")"
	exec {fd}>"$1"
	LOCK_FDS+=("$fd")
	flock -w 600 "$fd" || die "another services.sh holds $1"
}

release_lock() {
	have flock || return 0
	local fd=${LOCK_FDS[-1]}
	unset 'LOCK_FDS[-1]'
	exec {fd}>&-
}

close_lock_fds() {
	local fd
	for fd in "${LOCK_FDS[@]+"${LOCK_FDS[@]}"}"; do eval "exec $fd>&-"; done
}

# nolock CMD...: runs CMD without the lock file descriptors.
nolock() { (close_lock_fds; "$@"); }

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

# gone PID: the process has exited and released its files and sockets: no process, or a zombie without threads
# left. (Its command line empties earlier; a SIGKILLed JVM's main thread is a zombie while its other threads still
# hold the listening sockets.)
gone() {
	local stat tasks
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	stat=${stat##*) }
	[[ ${stat:0:1} == Z || ${stat:0:1} == X ]] || return 1
	tasks=(/proc/"$1"/task/*)
	((${#tasks[@]} <= 1))
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

# free_port: a port nothing listens on, below the ephemeral range and outside the fixed cluster ports (29xxx).
free_port() {
	local p
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 9000))
		port_owner "$p" >/dev/null || { echo "$p"; return 0; }
	done
	die "no free port found in 20000-28999"
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

# launch PIDFILE MARKER OUTFILE CMD...: starts CMD in its own session, detached from this shell (stdin from
# /dev/null, stdout/stderr appended to OUTFILE, lock fds closed), and records its pid. With SIGNALSTAGE_OWNER_PID
# a watchdog SIGKILLs the server once the owner is gone (checking the command line, so never a recycled pid).
launch() {
	local pidfile=$1 marker=$2 out=$3 pid
	shift 3
	printf '\n===== %s starting: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$out"
	(close_lock_fds; exec setsid nohup "$@" </dev/null >>"$out" 2>&1) &
	pid=$!
	echo "$pid" >"$pidfile"
	# $! is the server itself (setsid/nohup exec in place); fall back to a search if it is not.
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		pid_of "$pidfile" "$marker" >/dev/null && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if ! pid_of "$pidfile" "$marker" >/dev/null && have pgrep && pid=$(pgrep -n -f -- "$marker"); then
		echo "$pid" >"$pidfile"
	fi
	[[ -n $OWNER_PID ]] || return 0
	pid=$(<"$pidfile")
	(
		close_lock_fds
		# shellcheck disable=SC2016 # expanded by the watchdog's own shell
		exec setsid nohup bash -c 'while kill -0 "$1" 2>/dev/null && [[ -e /proc/$2 ]]; do sleep 1; done
			if ! kill -0 "$1" 2>/dev/null && tr "\0" " " <"/proc/$2/cmdline" 2>/dev/null | grep -qF -- "$3"; then
				kill -KILL "$2"; fi' watchdog "$OWNER_PID" "$pid" "$marker" </dev/null >/dev/null 2>&1
	) &
}

java_ok() {
	have java || return 1
	local v
	v=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
	[[ -n $v && $v -ge 17 ]]
}

# fetch_jars NAME POM LIBS GLOB: copies POM's runtime dependencies from Maven Central into LIBS unless LIBS was
# filled from this very POM (LIBS/.pom-sha256) and has a jar matching GLOB.
fetch_jars() {
	local name=$1 pom=$2 libs=$3 glob=$4 want t0
	want=$(sha256sum "$pom" | cut -d' ' -f1)
	if [[ -s $libs/.pom-sha256 && $(<"$libs/.pom-sha256") == "$want" ]] && compgen -G "$libs/$glob" >/dev/null; then
		return 0
	fi
	have mvn || die "Maven ('mvn') is needed to fetch the $name jars from Maven Central"
	t0=$(now_ms)
	log "$name: fetching jars from Maven Central into $libs ..."
	rm -rf "$libs"
	mkdir -p "$libs"
	if ! nolock mvn -q -B -Dstyle.color=never -f "$pom" -Dmaven.repo.local="$CACHE/m2" \
		dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs" >"$libs/mvn.log" 2>&1; then
		show_tail "$libs/mvn.log"
		die "mvn could not fetch the $name jars (full output: $libs/mvn.log)"
	fi
	compgen -G "$libs/$glob" >/dev/null || die "mvn ran but $libs has no $glob"
	echo "$want" >"$libs/.pom-sha256"
	log "$name: jars fetched in $(since "$t0")"
}

# java_id: changes when the JDK does (class-data-sharing archives are valid for one JDK build only).
java_id() {
	local j
	j=$(readlink -f "$(command -v java)")
	stat -c '%Y-%s' "$j" "$(dirname "$j")/../lib/modules" 2>/dev/null | tr '\n' '-' | cksum | cut -d' ' -f1
}

# random_uuid: a KRaft cluster id (16 random bytes, base64url without padding, as Kafka's Uuid.toString), made
# here rather than by a JVM run of StorageTool random-uuid, which costs a second.
random_uuid() {
	local id
	while :; do
		id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
		[[ $id == -* || $id == AAAAAAAAAAAAAAAAAAAAA[AQ] ]] || { echo "$id"; return 0; }
	done
}

# shellcheck source=services.d/kafka.sh
source "$SCRIPT_DIR/services.d/kafka.sh"
# shellcheck source=services.d/clickhouse.sh
source "$SCRIPT_DIR/services.d/clickhouse.sh"
# shellcheck source=services.d/zookeeper.sh
source "$SCRIPT_DIR/services.d/zookeeper.sh"
# shellcheck source=services.d/registry.sh
source "$SCRIPT_DIR/services.d/registry.sh"
# shellcheck source=services.d/units.sh
source "$SCRIPT_DIR/services.d/units.sh"

main "$@"
