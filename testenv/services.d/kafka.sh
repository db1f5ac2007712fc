# shellcheck shell=bash
# testenv/services.d/kafka.sh, sourced by testenv/services.sh: Apache Kafka (KRaft) nodes. One implementation
# (render the config, format the storage once, start, probe) serves the single broker, the private brokers of
# single tests and the cluster's controllers and brokers; kafka_define_* only set the K_* variables of a node.

KAFKA_PORT=${SIGNALSTAGE_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${SIGNALSTAGE_KAFKA_CONTROLLER_PORT:-9093}
KAFKA_JAVA_OPTS=${SIGNALSTAGE_KAFKA_JAVA_OPTS:--Xms256m -Xmx1g}
KAFKA_DIR=${SIGNALSTAGE_KAFKA_DIR:-$CACHE/kafka}
KAFKA_SASL_PORT=${SIGNALSTAGE_KAFKA_SASL_SSL_PORT:-}

KC_DIR=$CACHE/kafka-cluster
KC_PORT=${SIGNALSTAGE_KAFKA_CLUSTER_PORT:-29091}
KC_CTRL_PORT=${SIGNALSTAGE_KAFKA_CLUSTER_CONTROLLER_PORT:-29191}
KC_JAVA_OPTS=${SIGNALSTAGE_KAFKA_CLUSTER_JAVA_OPTS:--Xms128m -Xmx512m}
KC_CTRL_JAVA_OPTS=${SIGNALSTAGE_KAFKA_CONTROLLER_JAVA_OPTS:--Xms32m -Xmx128m -XX:TieredStopAtLevel=1}

KAFKA_POM=$SCRIPT_DIR/kafka/pom.xml
KAFKA_LIBS=$CACHE/kafka/libs
KAFKA_CDS_DIR=$CACHE/kafka/cds
KAFKAREADY_SRC=$SCRIPT_DIR/cmd/kafkaready

# kafka_node_dir DIR: the paths of a node living in DIR.
kafka_node_dir() {
	K_DIR=$1
	K_CONF=$K_DIR/config/server.properties
	K_LOG4J=$K_DIR/config/log4j2.properties
	K_EXTRA=$K_DIR/config/extra.properties
	K_SCRAM=$K_DIR/config/scram-credentials
	K_DATA=$K_DIR/data
	K_LOGDIR=$K_DIR/logs
	K_LOG=$K_LOGDIR/server.log
	K_OUT=$K_LOGDIR/stdout.log
	K_PID=$K_DIR/kafka.pid
	U_KIND=kafka U_AFTER="" U_DIR=$K_DIR U_PIDFILE=$K_PID U_MARKER=$K_CONF U_LOGS=("$K_LOG" "$K_OUT") U_STAGE=1
}

# kafka_define_single: the single broker+controller (node 1), or a private one with SIGNALSTAGE_KAFKA_DIR.
kafka_define_single() {
	kafka_node_dir "$KAFKA_DIR"
	K_ROLES=broker,controller K_ID=1 K_PORT=$KAFKA_PORT K_CTRL_PORT=$KAFKA_CONTROLLER_PORT K_SASL_PORT=$KAFKA_SASL_PORT
	K_VOTERS="1@$HOST:$KAFKA_CONTROLLER_PORT" K_RF=1 K_MINISR=1 K_CID_FILE=$K_DIR/cluster-id K_JAVA_OPTS=$KAFKA_JAVA_OPTS
	U_PORTS=("$K_PORT" "$K_CTRL_PORT" ${K_SASL_PORT:+"$K_SASL_PORT"})
	U_ADDR="$HOST:$K_PORT${K_SASL_PORT:+ sasl_ssl $HOST:$K_SASL_PORT} (controller $K_CTRL_PORT)"
	if [[ $K_DIR == "$CACHE/kafka" ]]; then U_LOCK=$CACHE/services.lock; else U_LOCK=$K_DIR/services.lock; fi
}

kafka_cluster_voters() {
	local i v=()
	for i in 1 2 3; do v+=("$((100 + i))@$HOST:$((KC_CTRL_PORT + i - 1))"); done
	(IFS=,; echo "${v[*]}")
}

kafka_cluster_brokers() {
	local i v=()
	for i in 1 2 3; do v+=("$HOST:$((KC_PORT + i - 1))"); done
	(IFS=,; echo "${v[*]}")
}

# kafka_define_cluster_node controller|broker N: controllers are node ids 101-103, brokers 1-3. Separate
# controllers keep the metadata quorum alive while brokers die, so with two brokers down the third is leader with
# an ISR of one and refuses acks=all writes with NOT_ENOUGH_REPLICAS (with combined nodes the quorum would be lost
# and writes would only time out).
kafka_define_cluster_node() {
	local role=$1 i=$2
	kafka_node_dir "$KC_DIR/$role-$i"
	K_VOTERS=$(kafka_cluster_voters) K_RF=3 K_MINISR=2 K_CID_FILE=$KC_DIR/cluster-id K_SASL_PORT=""
	U_LOCK=$CACHE/kafka-cluster.lock
	if [[ $role == controller ]]; then
		K_ROLES=controller K_ID=$((100 + i)) K_PORT="" K_CTRL_PORT=$((KC_CTRL_PORT + i - 1)) K_JAVA_OPTS=$KC_CTRL_JAVA_OPTS
		U_PORTS=("$K_CTRL_PORT") U_ADDR="$HOST:$K_CTRL_PORT (controller, node $K_ID)" U_STAGE=2
	else
		K_ROLES=broker K_ID=$i K_PORT=$((KC_PORT + i - 1)) K_CTRL_PORT="" K_JAVA_OPTS=$KC_JAVA_OPTS
		U_PORTS=("$K_PORT") U_ADDR="$HOST:$K_PORT (broker, node $K_ID)"
	fi
}

# --- install -------------------------------------------------------------------------------------------

kafka_install() {
	java_ok || die "Kafka 4.x needs Java 17+ ('java' on PATH); found: $(java -version 2>&1 | head -n1 || echo none)"
	kafka_installed && return 0
	take_lock "$CACHE/install.lock"
	if ! kafka_libs_current && kafka_any_running; then
		log "kafka: $KAFKA_POM changed but a broker is running; stop them ('down kafka', 'down kafka-cluster') to refetch the jars"
	else
		fetch_jars kafka "$KAFKA_POM" "$KAFKA_LIBS" 'kafka_2.13-*.jar'
	fi
	build_kafkaready
	[[ -e $(kafka_cds_file) || -e $(kafka_cds_file).failed ]] || kafka_cds_train
	release_lock
}

kafka_libs_current() {
	[[ -s $KAFKA_LIBS/.pom-sha256 && $(<"$KAFKA_LIBS/.pom-sha256") == "$(sha256sum "$KAFKA_POM" | cut -d' ' -f1)" ]] &&
		compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" >/dev/null
}

kafka_installed() {
	kafka_libs_current || return 1
	[[ -x $(kafkaready_bin) ]] || ! have go || return 1
	[[ -e $(kafka_cds_file) || -e $(kafka_cds_file).failed ]]
}

kafka_any_running() {
	local u
	for u in kafka $KAFKA_CLUSTER_UNITS; do
		(unit_define "$u" && pid_of "$U_PIDFILE" "$U_MARKER" >/dev/null) && return 0
	done
	return 1
}

# kafkaready_bin: the probe binary for this source tree. Named by a hash of its inputs, so worktrees with
# different versions of the probe never run each other's build from a shared cache.
kafkaready_bin() {
	echo "$CACHE/bin/kafkaready-$(cat "$KAFKAREADY_SRC/main.go" "$REPO/go.mod" "$REPO/go.sum" | sha256sum | cut -c1-12)"
}

build_kafkaready() {
	local bin
	bin=$(kafkaready_bin)
	[[ -x $bin ]] && return 0
	if ! have go; then
		log "WARNING: no 'go' on PATH: Kafka readiness falls back to a TCP port check"
		return 0
	fi
	mkdir -p "$CACHE/bin"
	if ! (cd "$REPO" && nolock go build -buildvcs=false -o "$bin.tmp" ./testenv/cmd/kafkaready); then
		rm -f "$bin.tmp"
		log "WARNING: could not build testenv/cmd/kafkaready: Kafka readiness falls back to a TCP port check"
		return 0
	fi
	mv -f "$bin.tmp" "$bin"
}

# kafka_cds_file: the class-data-sharing archive for these jars and this JDK. Loading Kafka's classes from it
# instead of 45 jars halves the time to ready (measured: 5.9 s to 2.9 s, and 2.1 s with the C1 compiler only)
# and the mapped classes are shared between the JVMs of a cluster.
kafka_cds_file() {
	local pom=none
	[[ -s $KAFKA_LIBS/.pom-sha256 ]] && pom=$(cut -c1-12 "$KAFKA_LIBS/.pom-sha256")
	echo "$KAFKA_CDS_DIR/kafka-$pom-$(java_id).jsa"
}

kafka_cds_opts() {
	local f
	f=$(kafka_cds_file)
	[[ -s $f ]] && echo "-XX:SharedArchiveFile=$f -Xshare:auto"
	return 0
}

# kafka_cds_train: runs a throwaway broker once on free ports with -XX:ArchiveClassesAtExit until it is ready
# (coordinators included), stops it and keeps the archive the JVM writes at exit. A failure is remembered
# (<archive>.failed) and brokers then start without an archive; remove kafka/cds/ to try again.
kafka_cds_train() {
	local archive t0 pid ok=0
	archive=$(kafka_cds_file)
	t0=$(now_ms)
	mkdir -p "$KAFKA_CDS_DIR"
	log "kafka: making the class-data-sharing archive (once, about 15 s) ..."
	(
		kafka_node_dir "$KAFKA_CDS_DIR/train"
		rm -rf "$K_DIR"
		K_ROLES=broker,controller K_ID=1 K_PORT=$(free_port) K_CTRL_PORT=$(free_port) K_SASL_PORT="" K_RF=1 K_MINISR=1
		K_VOTERS="1@$HOST:$K_CTRL_PORT" K_CID_FILE=$K_DIR/cluster-id
		kafka_render && kafka_format || exit 1
		launch "$K_PID" "$K_CONF" "$K_OUT" java -Xms128m -Xmx512m -XX:ArchiveClassesAtExit="$archive.tmp" \
			-Djava.awt.headless=true -Dlog4j2.configurationFile="$K_LOG4J" -Dkafka.logs.dir="$K_LOGDIR" \
			-cp "$KAFKA_LIBS/*" kafka.Kafka "$K_CONF"
		pid=$(<"$K_PID")
		deadline=$((SECONDS + READY_TIMEOUT))
		until kafka_probe; do
			((SECONDS < deadline)) && kill -0 "$pid" 2>/dev/null || { kill -KILL "$pid" 2>/dev/null; exit 1; }
			sleep 0.2
		done
		kill -TERM "$pid"
		deadline=$((SECONDS + 60))
		while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
		kill -KILL "$pid" 2>/dev/null || true
	) && [[ -s $archive.tmp ]] && mv -f "$archive.tmp" "$archive" && ok=1
	if ((ok)); then
		rm -rf "$KAFKA_CDS_DIR/train"
		log "kafka: class-data-sharing archive made in $(since "$t0")"
	else
		rm -f "$archive.tmp"
		touch "$archive.failed"
		log "WARNING: kafka: no class-data-sharing archive (see $KAFKA_CDS_DIR/train/logs); brokers start without one"
	fi
}

# --- config, storage, start ----------------------------------------------------------------------------

kafka_render() {
	local listeners=() advertised=() map="CONTROLLER:PLAINTEXT"
	mkdir -p "$K_DIR/config" "$K_DATA" "$K_LOGDIR"
	if [[ $K_ROLES == *broker* ]]; then
		listeners+=("PLAINTEXT://$HOST:$K_PORT") advertised+=("PLAINTEXT://$HOST:$K_PORT") map="PLAINTEXT:PLAINTEXT,$map"
		if [[ -n $K_SASL_PORT ]]; then
			listeners+=("SASL_SSL://$HOST:$K_SASL_PORT") advertised+=("SASL_SSL://$HOST:$K_SASL_PORT")
			map="$map,SASL_SSL:SASL_SSL"
			[[ -s $K_EXTRA ]] || die "kafka: a SASL_SSL listener needs its TLS and SASL settings in $K_EXTRA"
		fi
	fi
	[[ $K_ROLES == *controller* ]] && listeners+=("CONTROLLER://$HOST:$K_CTRL_PORT")
	{
		cat <<EOF
# Generated by testenv/services.sh; edits are overwritten on the next 'up'.
process.roles=$K_ROLES
node.id=$K_ID
controller.quorum.voters=$K_VOTERS
listeners=$(IFS=,; echo "${listeners[*]}")
controller.listener.names=CONTROLLER
listener.security.protocol.map=$map
log.dirs=$K_DATA
EOF
		[[ $K_ROLES == *broker* ]] && cat <<EOF
advertised.listeners=$(IFS=,; echo "${advertised[*]}")
inter.broker.listener.name=PLAINTEXT
EOF
		cat <<EOF

# Replication: $K_RF replica(s) of everything, min.insync.replicas $K_MINISR.
num.partitions=1
default.replication.factor=$K_RF
min.insync.replicas=$K_MINISR
offsets.topic.replication.factor=$K_RF
transaction.state.log.replication.factor=$K_RF
transaction.state.log.min.isr=$K_MINISR
share.coordinator.state.topic.replication.factor=$K_RF
share.coordinator.state.topic.min.isr=$K_MINISR
# Few internal partitions: creating and loading __consumer_offsets / __transaction_state takes a moment
# instead of seconds on first start and on every restart.
offsets.topic.num.partitions=4
transaction.state.log.num.partitions=4
share.coordinator.state.topic.num.partitions=4
# After an unclean stop (SIGKILL, crash) a restarted broker cannot register until the controller expires the old
# incarnation's session, and a dead broker leaves the ISRs only then: 4 s instead of the default 9 s.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=4000
# Tests create their topics explicitly and must not wait for rebalances.
auto.create.topics.enable=false
delete.topic.enable=true
group.initial.rebalance.delay.ms=0
# Test data does not need to live long.
log.retention.hours=24
EOF
		if [[ -s $K_EXTRA ]]; then
			printf '\n# From %s\n' "$K_EXTRA"
			cat "$K_EXTRA"
		fi
	} >"$K_CONF.tmp"
	mv -f "$K_CONF.tmp" "$K_CONF"
	cat >"$K_LOG4J" <<EOF
# Generated by testenv/services.sh: log4j2 config, INFO to $K_LOG.
status = warn
name = signalstage-kafka
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = $K_LOG
appender.file.filePattern = $K_LOG.%i
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

# kafka_format formats log.dirs once, with the cluster id of K_CID_FILE (made once) and the SCRAM credentials
# of K_SCRAM (SCRAM users can only be added without a running broker here, at format time).
kafka_format() {
	[[ -f $K_DATA/meta.properties ]] && return 0
	local cid="" args=() line
	mkdir -p "$(dirname "$K_CID_FILE")"
	if [[ ! -s $K_CID_FILE ]]; then # nodes of a cluster format in parallel: the first link wins
		random_uuid >"$K_CID_FILE.$BASHPID"
		ln "$K_CID_FILE.$BASHPID" "$K_CID_FILE" 2>/dev/null || true
		rm -f "$K_CID_FILE.$BASHPID"
	fi
	cid=$(<"$K_CID_FILE")
	if [[ -s $K_SCRAM ]]; then
		while IFS= read -r line; do [[ -n $line ]] && args+=(--add-scram "$line"); done <"$K_SCRAM"
	fi
	log "kafka: formatting $K_DATA (cluster id $cid, node $K_ID)"
	# shellcheck disable=SC2046 # kafka_cds_opts is a list of JVM flags
	nolock java -XX:TieredStopAtLevel=1 $(kafka_cds_opts) -Dlog4j2.configurationFile="$K_LOG4J" -cp "$KAFKA_LIBS/*" \
		kafka.tools.StorageTool format -t "$cid" -c "$K_CONF" --ignore-formatted "${args[@]+"${args[@]}"}" \
		>>"$K_OUT" 2>&1 || { show_tail "$K_OUT" "$K_LOG"; die "kafka: storage format of $K_DATA failed"; }
}

kafka_start() {
	kafka_render
	kafka_format
	# shellcheck disable=SC2086,SC2046 # K_JAVA_OPTS and kafka_cds_opts are lists of JVM flags
	launch "$K_PID" "$K_CONF" "$K_OUT" \
		java $K_JAVA_OPTS $(kafka_cds_opts) -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
		-Dlog4j2.configurationFile="$K_LOG4J" -Dkafka.logs.dir="$K_LOGDIR" \
		-cp "$KAFKA_LIBS/*" kafka.Kafka "$K_CONF"
}

# kafka_probe: a broker is ready once it is live in the metadata (registered, unfenced) and the cluster names a
# group and a transaction coordinator; a controller once the quorum has a leader and lists it as a voter.
kafka_probe() { kafka_probe_with -coordinators=true -timeout 2s -attempt 1s; }

kafka_probe_quick() { kafka_probe_with -coordinators=false -timeout 3s -attempt 2s; }

kafka_probe_with() {
	local bin seeds=$HOST:$K_PORT port=$K_PORT mode=()
	bin=$(kafkaready_bin)
	if [[ $K_ROLES != *broker* ]]; then # only the quorum leader answers: ask every voter
		port=$K_CTRL_PORT mode=(-controller) seeds=$(sed -E 's/(^|,)[0-9]+@/\1/g' <<<"$K_VOTERS")
	fi
	tcp_open "$port" || return 1
	[[ -x $bin ]] || return 0
	"$bin" -brokers "$seeds" -node-id "$K_ID" "${mode[@]+"${mode[@]}"}" -q "$@" 2>/dev/null
}

kafka_env() {
	echo "export SIGNALSTAGE_KAFKA_BROKERS=$HOST:$KAFKA_PORT"
	echo "export SIGNALSTAGE_KAFKA_CLUSTER_BROKERS=$(kafka_cluster_brokers)"
}
