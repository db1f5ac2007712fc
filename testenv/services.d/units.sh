# shellcheck shell=bash
# testenv/services.d/units.sh, sourced by testenv/services.sh: units, groups and the subcommands.
#
# A unit is one server process. unit_define NAME sets, for that unit:
#   U_KIND     kafka | clickhouse | zookeeper | registry: the <kind>_install, <kind>_start, <kind>_probe and
#              <kind>_probe_quick functions serve it (after <kind>_define... has set its own variables)
#   U_PIDFILE  U_MARKER (a string only its command line contains: its generated config path)
#   U_LOGS     its log files, main log first          U_PORTS  the ports it binds
#   U_ADDR     the address shown by status            U_LOCK   the lock file of its group
#   U_STAGE    1, or 2 for units that others depend on (stopped last: controllers, ZooKeeper)
#   U_DIR      its directory (status lists a cluster unit only once this exists)
#   U_AFTER    a unit that must be ready before this one starts, or empty

KAFKA_CLUSTER_UNITS="kafka-controller-1 kafka-controller-2 kafka-controller-3 kafka-broker-1 kafka-broker-2 kafka-broker-3"
CLICKHOUSE_CLUSTER_UNITS="zookeeper clickhouse-s1r1 clickhouse-s1r2 clickhouse-s2r1 clickhouse-s2r2"

unit_define() {
	case $1 in
	kafka) kafka_define_single ;;
	kafka-controller-[1-3]) kafka_define_cluster_node controller "${1##*-}" ;;
	kafka-broker-[1-3]) kafka_define_cluster_node broker "${1##*-}" ;;
	clickhouse) clickhouse_define_single ;;
	clickhouse-s[12]r[12]) clickhouse_define_node "${1#clickhouse-}" ;;
	zookeeper) zookeeper_define ;;
	registry) registry_define ;;
	*) die "unknown service '$1' (kafka, clickhouse, registry, kafka-cluster, clickhouse-cluster, clusters, or one of: $KAFKA_CLUSTER_UNITS $CLICKHOUSE_CLUSTER_UNITS)" ;;
	esac
}

# expand TARGET...: prints the units of the targets (default: kafka clickhouse), each once, in order.
expand() {
	local t u out=()
	(($# > 0)) || set -- kafka clickhouse
	for t in "$@"; do
		case $t in
		all) out+=(kafka clickhouse) ;;
		kafka-cluster) read -ra u <<<"$KAFKA_CLUSTER_UNITS" && out+=("${u[@]}") ;;
		clickhouse-cluster) read -ra u <<<"$CLICKHOUSE_CLUSTER_UNITS" && out+=("${u[@]}") ;;
		clusters) read -ra u <<<"$KAFKA_CLUSTER_UNITS $CLICKHOUSE_CLUSTER_UNITS" && out+=("${u[@]}") ;;
		*) unit_define "$t" && out+=("$t") ;;
		esac
	done
	printf '%s\n' "${out[@]}" | awk '!seen[$0]++'
}

# lock_units UNIT...: takes the lock of every group involved, in a fixed order.
lock_units() {
	local u f locks=()
	for u in "$@"; do
		unit_define "$u"
		locks+=("$U_LOCK")
	done
	while read -r f; do [[ -n $f ]] && take_lock "$f"; done < <(printf '%s\n' "${locks[@]}" | sort -u)
}

declare -A T0=()

# wait_ready UNIT...: polls every unit's probe at the same time until each one answers. A unit whose process
# dies fails at once; one not ready after READY_TIMEOUT is stopped. Either failure prints the unit's log tails
# and exits non-zero. Each unit's start time is T0[unit].
wait_ready() {
	local pending=("$@") left name deadline=$((SECONDS + READY_TIMEOUT))
	while ((${#pending[@]} > 0)); do
		left=()
		for name in "${pending[@]}"; do
			unit_define "$name"
			if ! pid_of "$U_PIDFILE" "$U_MARKER" >/dev/null; then
				log "ERROR: $name exited during startup"
				show_tail "${U_LOGS[@]}"
				rm -f "$U_PIDFILE"
				exit 1
			elif "${U_KIND}_probe"; then
				log "$name: ready in $(since "${T0[$name]}") (pid $(<"$U_PIDFILE"), log ${U_LOGS[0]})"
			elif ((SECONDS >= deadline)); then
				log "ERROR: $name not ready after ${READY_TIMEOUT}s, stopping it"
				show_tail "${U_LOGS[@]}"
				stop_units "$name"
				exit 1
			else
				left+=("$name")
			fi
		done
		pending=("${left[@]+"${left[@]}"}")
		((${#pending[@]} == 0)) || sleep 0.2
	done
}

# stop_units UNIT...: SIGTERM to every running unit of a stage at once, wait up to STOP_TIMEOUT for all of them,
# SIGKILL what is left; stage 1 (brokers, ClickHouse servers) before stage 2 (controllers, ZooKeeper).
stop_units() {
	local stage u pid deadline
	local -A pids=() t0s=()
	for stage in 1 2; do
		pids=() t0s=()
		for u in "$@"; do
			unit_define "$u"
			[[ $U_STAGE == "$stage" ]] || continue
			if ! pid=$(pid_of "$U_PIDFILE" "$U_MARKER"); then
				[[ -e $U_PIDFILE ]] && log "$u: not running (removing stale pid file)"
				[[ -e $U_PIDFILE ]] || log "$u: not running"
				rm -f "$U_PIDFILE"
				continue
			fi
			kill -TERM "$pid" 2>/dev/null || true
			pids[$u]=$pid t0s[$u]=$(now_ms)
		done
		deadline=$((SECONDS + STOP_TIMEOUT))
		while ((${#pids[@]} > 0)); do
			for u in "${!pids[@]}"; do
				unit_define "$u"
				if ! pid_of "$U_PIDFILE" "$U_MARKER" >/dev/null && gone "${pids[$u]}"; then
					rm -f "$U_PIDFILE"
					log "$u: stopped pid ${pids[$u]} in $(since "${t0s[$u]}")"
					unset 'pids[$u]'
				elif ((SECONDS >= deadline)); then
					log "$u: pid ${pids[$u]} still alive after ${STOP_TIMEOUT}s, sending SIGKILL"
					kill -KILL "${pids[$u]}" 2>/dev/null || true
					sleep 0.5
					rm -f "$U_PIDFILE"
					unset 'pids[$u]'
				fi
			done
			((${#pids[@]} == 0)) || sleep 0.2
		done
	done
}

cmd_install() {
	local u kinds=()
	for u in "$@"; do
		unit_define "$u"
		[[ " ${kinds[*]-} " == *" $U_KIND "* ]] || kinds+=("$U_KIND")
	done
	for u in "${kinds[@]}"; do "${u}_install"; done
}

cmd_up() {
	local u t0 waiting=() to_start=()
	t0=$(now_ms)
	cmd_install "$@"
	for u in "$@"; do # fail before starting anything when a port is taken by a stranger
		unit_define "$u"
		pid_of "$U_PIDFILE" "$U_MARKER" >/dev/null || check_ports "$u" "${U_PORTS[@]}"
	done
	# Launch what is not running (all in parallel), then wait for all of them together.
	for u in "$@"; do
		unit_define "$u"
		if pid_of "$U_PIDFILE" "$U_MARKER" >/dev/null; then
			if "${U_KIND}_probe"; then
				log "$u: already running (pid $(<"$U_PIDFILE")), ready"
			else
				log "$u: already running (pid $(<"$U_PIDFILE")) but not ready yet, waiting"
				T0[$u]=$(now_ms)
				waiting+=("$u")
			fi
			continue
		fi
		rm -f "$U_PIDFILE"
		T0[$u]=$(now_ms)
		mark_logs "${U_LOGS[@]}"
		waiting+=("$u") to_start+=("$u")
	done
	# Units that need another one ready first (U_AFTER) start in a second round.
	local now=() later=() first=()
	for u in "${to_start[@]+"${to_start[@]}"}"; do
		unit_define "$u"
		if [[ -n $U_AFTER ]]; then later+=("$u"); else now+=("$u"); fi
	done
	for u in "${waiting[@]+"${waiting[@]}"}"; do
		[[ " ${later[*]-} " == *" $u "* ]] || first+=("$u")
	done
	start_units "${now[@]+"${now[@]}"}"
	((${#first[@]} == 0)) || wait_ready "${first[@]}"
	if ((${#later[@]} > 0)); then
		for u in "${later[@]}"; do
			unit_define "$u"
			local dep=$U_AFTER
			unit_define "$dep"
			"${U_KIND}_probe" || die "$u needs $dep running and ready first (run: $0 up $dep)"
		done
		for u in "${later[@]}"; do T0[$u]=$(now_ms); done
		start_units "${later[@]}"
		wait_ready "${later[@]}"
	fi
	log "up: done in $(since "$t0")"
}

# start_units UNIT...: each start (render, format, launch) in a subshell of its own, all at once (formatting a
# Kafka node is a JVM run of its own).
start_units() {
	local u pid starts=() failed=0
	for u in "$@"; do
		(
			unit_define "$u"
			"${U_KIND}_start"
			log "$u: started pid $(<"$U_PIDFILE") on $U_ADDR"
		) &
		starts+=($!)
	done
	for pid in "${starts[@]+"${starts[@]}"}"; do wait "$pid" || failed=1; done
	((failed == 0)) || die "could not start every service (see above)"
}

cmd_kill() {
	local u pid t0
	(($# > 0)) || die "kill needs a unit (e.g. kafka-broker-2)"
	for u in "$@"; do
		unit_define "$u"
		if ! pid=$(pid_of "$U_PIDFILE" "$U_MARKER"); then
			log "$u: not running"
			rm -f "$U_PIDFILE"
			continue
		fi
		t0=$(now_ms)
		kill -KILL "$pid" 2>/dev/null || true
		while ! gone "$pid"; do
			((($(now_ms) - t0) < 10000)) || die "$u: pid $pid survived SIGKILL for 10s"
			sleep 0.05
		done
		rm -f "$U_PIDFILE"
		log "$u: killed pid $pid (SIGKILL)"
	done
}

cmd_status() {
	local u pid ready state explicit=$#
	while read -r u; do
		unit_define "$u"
		# Without targets, list the cluster units only once they were started here.
		((explicit > 0)) || [[ $u == kafka || $u == clickhouse || -d $U_DIR/data || -d $U_DIR/logs ]] || continue
		state=stopped ready=no
		if pid=$(pid_of "$U_PIDFILE" "$U_MARKER"); then
			state=running
			"${U_KIND}_probe_quick" && ready=yes
		else
			pid=-
		fi
		printf '%-18s %-8s pid=%-8s addr=%-40s ready=%-3s log=%s\n' "$u" "$state" "$pid" "$U_ADDR" "$ready" "${U_LOGS[0]}"
	done < <(if ((explicit > 0)); then printf '%s\n' "$@"; else expand kafka clickhouse registry clusters; fi)
}

cmd_env() {
	kafka_env
	clickhouse_env
	zookeeper_env
	registry_env
}

cmd_logs() {
	local u f
	for u in "$@"; do
		unit_define "$u"
		for f in "${U_LOGS[@]}"; do printf '%-18s %s\n' "$u" "$f"; done
	done
}

usage() {
	sed -n '3,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$SCRIPT_DIR/services.sh"
}

main() {
	local cmd=${1:-} units=() list
	shift || true
	case $cmd in
	up | down | install | kill | status | logs)
		list=$(expand "$@") || exit 1 # an unknown target has been reported
		mapfile -t units <<<"$list"
		;;
	esac
	case $cmd in
	up) lock_units "${units[@]}"; cmd_up "${units[@]}" ;;
	down) lock_units "${units[@]}"; stop_units "${units[@]}" ;;
	install) lock_units "${units[@]}"; cmd_install "${units[@]}" ;;
	kill) (($# > 0)) || die "kill needs a unit (e.g. kafka-broker-2)"; cmd_kill "${units[@]}" ;;
	status) if (($# > 0)); then cmd_status "${units[@]}"; else cmd_status; fi ;;
	env) cmd_env ;;
	logs) cmd_logs "${units[@]}" ;;
	-h | --help | help) usage ;;
	*) usage >&2; exit 2 ;;
	esac
}
