# shellcheck shell=bash
# testenv/services.d/clickhouse.sh, sourced by testenv/services.sh: ClickHouse servers (Debian's clickhouse-server).
# One implementation serves the single server and the four nodes of the cluster: every node renders the same
# testenv/clickhouse/config.xml with its own directory and ports; a cluster node adds etc/config.d/cluster.xml
# (macros, remote_servers, ZooKeeper, interserver port) rendered from testenv/clickhouse-cluster/cluster.xml.

CH_TCP_PORT=${SIGNALSTAGE_CLICKHOUSE_PORT:-9000}
CH_HTTP_PORT=${SIGNALSTAGE_CLICKHOUSE_HTTP_PORT:-8123}
CHC_PORT=${SIGNALSTAGE_CLICKHOUSE_CLUSTER_PORT:-29001}
CHC_NAME=signalstage
CHC_NODES="s1r1 s1r2 s2r1 s2r2"
CH_TEMPLATES=$SCRIPT_DIR/clickhouse
CHC_TEMPLATE=$SCRIPT_DIR/clickhouse-cluster/cluster.xml

ch_node_dir() {
	C_DIR=$1
	C_CONF=$C_DIR/etc/config.xml
	C_LOGDIR=$C_DIR/logs
	C_PID=$C_DIR/clickhouse.pid
	U_KIND=clickhouse U_AFTER="" U_DIR=$C_DIR U_PIDFILE=$C_PID U_MARKER=$C_CONF U_STAGE=1
	U_LOGS=("$C_LOGDIR/clickhouse-server.log" "$C_LOGDIR/stdout.log" "$C_LOGDIR/clickhouse-server.err.log")
}

clickhouse_define_single() {
	ch_node_dir "$CACHE/clickhouse"
	C_TCP=$CH_TCP_PORT C_HTTP=$CH_HTTP_PORT C_NODE=""
	U_PORTS=("$C_TCP" "$C_HTTP") U_ADDR="$HOST:$C_TCP,http://$HOST:$C_HTTP" U_LOCK=$CACHE/services.lock
}

# ch_node_index sXrY: 0 for s1r1, 1 for s1r2, 2 for s2r1, 3 for s2r2 (the port offset).
ch_node_index() {
	local n=$1
	echo $(((${n:1:1} - 1) * 2 + ${n:3:1} - 1))
}

# clickhouse_define_node sXrY: shard X, replica Y of the cluster.
clickhouse_define_node() {
	local i
	i=$(ch_node_index "$1")
	ch_node_dir "$CACHE/clickhouse-cluster/$1"
	C_NODE=$1 C_TCP=$((CHC_PORT + i)) C_HTTP=$((CHC_PORT + 100 + i)) C_INTER=$((CHC_PORT + 200 + i))
	U_PORTS=("$C_TCP" "$C_HTTP" "$C_INTER") U_ADDR="$HOST:$C_TCP,http://$HOST:$C_HTTP (shard ${1:1:1})"
	# 18.16 exits at start ("Caught exception while loading metadata: ... Invalid argument") when a replicated
	# table cannot reach ZooKeeper, where later versions start with the table read-only.
	U_LOCK=$CACHE/clickhouse-cluster.lock U_AFTER=zookeeper
}

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

clickhouse_install() {
	ch_cmd && return 0
	have apt-get || die "clickhouse-server is not installed and there is no apt-get to install it"
	take_lock "$CACHE/install.lock"
	ch_cmd && { release_lock; return 0; }
	local t0 before pid
	t0=$(now_ms)
	before=$(system_ch_pids)
	log "clickhouse: installing Debian packages clickhouse-server clickhouse-client ..."
	if ! nolock as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q clickhouse-server clickhouse-client >&2; then
		log "clickhouse: install failed, running apt-get update and retrying"
		nolock as_root apt-get update -q >&2 || true
		nolock as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q clickhouse-server clickhouse-client >&2 ||
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
	release_lock
}

clickhouse_render() {
	mkdir -p "$C_DIR/etc" "$C_DIR/data" "$C_DIR/tmp" "$C_DIR/user_files" "$C_DIR/format_schemas" "$C_LOGDIR"
	sed -e "s|@CH_DIR@|$C_DIR|g" -e "s|@LISTEN_HOST@|$HOST|g" \
		-e "s|@TCP_PORT@|$C_TCP|g" -e "s|@HTTP_PORT@|$C_HTTP|g" \
		"$CH_TEMPLATES/config.xml" >"$C_CONF.tmp"
	mv -f "$C_CONF.tmp" "$C_CONF"
	cp -f "$CH_TEMPLATES/users.xml" "$C_DIR/etc/users.xml"
	[[ -n $C_NODE ]] || return 0
	mkdir -p "$C_DIR/etc/config.d"
	local n subst=(-e "s|@CLUSTER@|$CHC_NAME|g" -e "s|@SHARD@|${C_NODE:1:1}|g" -e "s|@REPLICA@|$C_NODE|g"
		-e "s|@HOST@|$HOST|g" -e "s|@INTERSERVER_PORT@|$C_INTER|g" -e "s|@ZOOKEEPER_PORT@|$ZK_PORT|g")
	for n in $CHC_NODES; do subst+=(-e "s|@PORT_$n@|$((CHC_PORT + $(ch_node_index "$n")))|g"); done
	sed "${subst[@]}" "$CHC_TEMPLATE" >"$C_DIR/etc/config.d/cluster.xml.tmp"
	mv -f "$C_DIR/etc/config.d/cluster.xml.tmp" "$C_DIR/etc/config.d/cluster.xml"
}

clickhouse_start() {
	clickhouse_render
	ch_cmd || die "clickhouse-server not installed (run: $0 install clickhouse)"
	launch "$C_PID" "$C_CONF" "${U_LOGS[1]}" "${CH_CMD[@]}" --config-file="$C_CONF"
}

# clickhouse_probe: the server answers a query; a cluster node also has its ZooKeeper session (replicated tables
# and ON CLUSTER queries need one: 18.16 crashes on ON CLUSTER without it).
clickhouse_probe() {
	local q='SELECT 1'
	[[ -z $C_NODE ]] || q="SELECT count() > 0 FROM system.zookeeper WHERE path = '/'"
	if have curl; then
		[[ $(curl -sf --max-time 2 "http://$HOST:$C_HTTP/" --data-binary "$q" 2>/dev/null) == 1 ]]
	else
		[[ $(clickhouse-client --host "$HOST" --port "$C_TCP" --query "$q" 2>/dev/null) == 1 ]]
	fi
}

clickhouse_probe_quick() { clickhouse_probe; }

clickhouse_env() {
	local n addrs=()
	for n in $CHC_NODES; do addrs+=("$HOST:$((CHC_PORT + $(ch_node_index "$n")))"); done
	echo "export SIGNALSTAGE_CLICKHOUSE_ADDR=$HOST:$CH_TCP_PORT"
	echo "export SIGNALSTAGE_CLICKHOUSE_HTTP=http://$HOST:$CH_HTTP_PORT"
	echo "export SIGNALSTAGE_CLICKHOUSE_CLUSTER_ADDRS=$(IFS=,; echo "${addrs[*]}")"
	echo "export SIGNALSTAGE_CLICKHOUSE_CLUSTER_NAME=$CHC_NAME"
}
