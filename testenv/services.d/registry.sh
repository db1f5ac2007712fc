# shellcheck shell=bash
# testenv/services.d/registry.sh, sourced by testenv/services.sh: a Schema Registry (Apicurio Registry 2.4.2.Final,
# its Confluent-compatible API at /apis/ccompat/v7), built once from Maven Central jars (testenv/registry/) and run
# with the machine's Java, storage H2 in memory: a restart forgets every schema (and ids start again at 1).

REGISTRY_PORT=${SIGNALSTAGE_REGISTRY_PORT:-8081}
REGISTRY_JAVA_OPTS=${SIGNALSTAGE_REGISTRY_JAVA_OPTS:--Xms64m -Xmx256m}
REGISTRY_SRC=$SCRIPT_DIR/registry
REGISTRY_DIR=$CACHE/registry
REGISTRY_BUILD=$REGISTRY_DIR/build
REGISTRY_JAR=$REGISTRY_BUILD/registry-server/registry-server-1-runner.jar
REGISTRY_API=/apis/ccompat/v7

registry_define() {
	R_LOG=$REGISTRY_DIR/logs/registry.log
	# The marker: a system property only this server's command line has.
	R_MARKER=-Dsignalstage.registry.dir=$REGISTRY_DIR
	U_KIND=registry U_AFTER="" U_DIR=$REGISTRY_DIR U_PIDFILE=$REGISTRY_DIR/registry.pid U_MARKER=$R_MARKER U_STAGE=1
	U_LOGS=("$R_LOG" "$REGISTRY_DIR/logs/stdout.log") U_PORTS=("$REGISTRY_PORT")
	U_ADDR="http://$HOST:$REGISTRY_PORT$REGISTRY_API"
	U_LOCK=$CACHE/registry.lock
}

# registry_stamp: a hash of everything the build reads from the work tree (poms and sources).
registry_stamp() {
	(cd "$REGISTRY_SRC" && find . -type f \( -name pom.xml -o -path '*/src/*' \) ! -path './*/target/*' -print0 |
		LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1
}

registry_installed() {
	[[ -s $REGISTRY_JAR && -s $REGISTRY_BUILD/.stamp && $(<"$REGISTRY_BUILD/.stamp") == "$(registry_stamp)" ]]
}

registry_install() {
	java_ok || die "the registry needs Java 17+ ('java' on PATH)"
	registry_installed && return 0
	take_lock "$CACHE/install.lock"
	if registry_installed; then release_lock; return 0; fi
	have mvn || die "Maven ('mvn') is needed to build the registry from Maven Central jars"
	registry_define
	if pid_of "$U_PIDFILE" "$U_MARKER" >/dev/null; then
		log "registry: $REGISTRY_SRC changed but the registry is running; stop it ('down registry') to rebuild"
		release_lock
		return 0
	fi
	local t0
	t0=$(now_ms)
	log "registry: building Apicurio Registry from Maven Central jars into $REGISTRY_BUILD ..."
	rm -rf "$REGISTRY_BUILD"
	mkdir -p "$REGISTRY_BUILD"
	# install: the server's Quarkus build resolves this project's extension (config-index) from the repository.
	if ! nolock mvn -B -Dstyle.color=never -f "$REGISTRY_SRC/pom.xml" -Dmaven.repo.local="$CACHE/m2" \
		-Dregistry.build.root="$REGISTRY_BUILD" install >"$REGISTRY_BUILD/mvn.log" 2>&1; then
		show_tail "$REGISTRY_BUILD/mvn.log"
		die "mvn could not build the registry (full output: $REGISTRY_BUILD/mvn.log)"
	fi
	[[ -s $REGISTRY_JAR ]] || die "mvn ran but $REGISTRY_JAR is missing"
	registry_stamp >"$REGISTRY_BUILD/.stamp"
	log "registry: built in $(since "$t0")"
	release_lock
}

registry_start() {
	mkdir -p "$REGISTRY_DIR/logs"
	# shellcheck disable=SC2086 # REGISTRY_JAVA_OPTS is a list of JVM flags
	launch "$U_PIDFILE" "$R_MARKER" "${U_LOGS[1]}" java $REGISTRY_JAVA_OPTS -XX:+ExitOnOutOfMemoryError \
		"$R_MARKER" -Djava.awt.headless=true \
		-Dquarkus.http.host="$HOST" -Dquarkus.http.port="$REGISTRY_PORT" \
		-Dquarkus.log.file.enable=true -Dquarkus.log.file.path="$R_LOG" -Dquarkus.log.console.enable=false \
		-jar "$REGISTRY_JAR"
}

# registry_probe: the compatibility API lists its subjects (HTTP 200): the storage is up, not only the port.
registry_probe() {
	local r
	tcp_open "$REGISTRY_PORT" || return 1
	r=$( (exec 3<>"/dev/tcp/$HOST/$REGISTRY_PORT" &&
		printf 'GET %s/subjects HTTP/1.0\r\nHost: %s\r\nAccept: application/json\r\n\r\n' "$REGISTRY_API" "$HOST:$REGISTRY_PORT" >&3 &&
		timeout 2 head -n1 <&3) 2>/dev/null) || return 1
	[[ $r == "HTTP/1."?" 200"* ]]
}

registry_probe_quick() { registry_probe; }

# Not SIGNALSTAGE_SCHEMA_REGISTRY: that one turns a stage's registry mode on, which tests choose themselves.
registry_env() { echo "export SIGNALSTAGE_REGISTRY_URL=http://$HOST:$REGISTRY_PORT$REGISTRY_API"; }
