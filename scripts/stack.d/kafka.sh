# shellcheck shell=bash
# scripts/stack.d/kafka.sh: Kafka from Maven Central jars: KRaft (broker and
# controller in one JVM) or ZooKeeper mode (Kafka 3.x), plain or, in secure
# mode, SASL_SSL + SASL_PLAINTEXT. Configs: templates/kafka/.

kafka_major() { echo "${1%%.*}"; }

kafka_deps_xml() {
  local v=$1
  dep_xml org.apache.kafka kafka_2.13 "$v"
  if [[ $(kafka_major "$v") -ge 4 ]]; then
    # Kafka 4 logs through log4j2; the slf4j 1.7 binding is not transitive.
    dep_xml org.apache.logging.log4j log4j-api 2.24.3
    dep_xml org.apache.logging.log4j log4j-core 2.24.3
    dep_xml org.apache.logging.log4j log4j-slf4j-impl 2.24.3
  else
    dep_xml org.slf4j slf4j-reload4j 1.7.36
  fi
}

# Kafka's command-line tools (kafka-consumer-groups: ConsumerGroupCommand) are not in the
# broker's jars: org.apache.kafka:kafka-tools, resolved on demand into dist/kafka_tools-V.
kafka_tools_deps_xml() {
  dep_xml org.apache.kafka kafka-tools "$1"
  if [[ $(kafka_major "$1") -ge 4 ]]; then
    dep_xml org.apache.logging.log4j log4j-slf4j-impl 2.24.3
  else
    dep_xml org.slf4j slf4j-reload4j 1.7.36
  fi
}

# cmd_kafka_tool CLASS ARGS...: runs one of Kafka's tools against this stack's broker
# (--bootstrap-server added; in secure mode with the SASL_SSL SCRAM-SHA-512 client config).
# Resolving the jars starts and restarts nothing.
cmd_kafka_tool() {
  [[ $# -ge 1 ]] || die "usage: scripts/stack kafka-tool <main class> [args...]"
  local cls=$1 v cp bootstrap; shift
  v=$(state_get kafka VERSION); v=${v:-${KAFKA_VERSION:-${KAFKA_DEFAULT_CANDIDATES%% *}}}
  need_java
  v=$(ensure_dist kafka_tools "$v" "$v")
  cp=$(find "$STACK_DIR/dist/kafka_tools-$v/lib" -name '*.jar' | sort | paste -sd:)
  bootstrap=${KAFKA_TOOL_BOOTSTRAP:-127.0.0.1:$(effective_port kafka)}
  local -a extra=()
  if [[ $SECURE -eq 1 ]]; then
    extra=(--command-config "$(kafka_client_props SASL_SSL SCRAM-SHA-512)")
  fi
  local log4j=$STACK_DIR/dist/kafka_tools-$v/log4j.properties
  [[ -s $log4j ]] || printf '%s\n' 'log4j.rootLogger=WARN, stderr' \
    'log4j.appender.stderr=org.apache.log4j.ConsoleAppender' 'log4j.appender.stderr.Target=System.err' \
    'log4j.appender.stderr.layout=org.apache.log4j.PatternLayout' \
    'log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n' >"$log4j"
  "$JAVA17_HOME/bin/java" -Xmx256m -Dlog4j.configuration="file:$log4j" -cp "$cp" "$cls" \
    --bootstrap-server "$bootstrap" "${extra[@]}" "$@"
}

# Every listener/mechanism pair the secure broker offers; a client properties
# file is written for each (for the probe and for people).
KAFKA_CLIENT_COMBOS=("SASL_SSL SCRAM-SHA-512" "SASL_SSL SCRAM-SHA-256" "SASL_SSL PLAIN"
                     "SASL_PLAINTEXT SCRAM-SHA-256" "SASL_PLAINTEXT SCRAM-SHA-512" "SASL_PLAINTEXT PLAIN")

# kafka_client_props PROTOCOL MECHANISM: path of a client properties file
# (mode 600, in secrets/) for the app user of the secure stack, e.g.
#   kafka-client-sasl-ssl-scram-sha-512.properties
# usable with the probe and Kafka's own CLI tools (--command-config).
kafka_client_props() {
  local proto=$1 mech=$2 f module port
  f=${proto,,}-${mech,,}; f=$SECRETS_DIR/kafka-client-${f//_/-}.properties
  if [[ ! -s $f || $f -ot $(secret_file kafka_password) || $f -ot $TLS_DIR/ca.pem ]]; then
    case $mech in
      PLAIN) module=org.apache.kafka.common.security.plain.PlainLoginModule ;;
      *) module=org.apache.kafka.common.security.scram.ScramLoginModule ;;
    esac
    if [[ $proto == SASL_SSL ]]; then port=$KAFKA_PORT; else port=$KAFKA_SASL_PLAINTEXT_PORT; fi
    (umask 077
     { render kafka/client.properties APP_USER="$SECURE_USER" PROTOCOL="$proto" MECHANISM="$mech" \
         PORT="$port" LOGIN_MODULE="$module" APP_PASSWORD="$(secret kafka_password)"
       [[ $proto != SASL_SSL ]] || render kafka/client-ssl.properties CA_FILE="$TLS_DIR/ca.pem"
     } >"$f.tmp"
     mv "$f.tmp" "$f")
  fi
  echo "$f"
}

# A digest of the app password, to detect Kafka data formatted for another one.
kafka_scram_fingerprint() { sha256sum <"$(secret_file kafka_password)" | cut -c1-16; }

# kafka_write_configs VERSION MODE CONF DATA LOGS: server.properties (one
# template per mode: secure, kraft, zookeeper; then the settings they share
# and Kafka 4's), zookeeper.properties, and both logging configs (log4j for
# Kafka 3, log4j2 for Kafka 4), all regenerated at every start.
kafka_write_configs() {
  local ver=$1 mode=$2 conf=$3 data=$4 logs=$5 head=$2
  local -a secrets=()
  mkdir -p "$conf" "$data" "$logs"
  if [[ $SECURE -eq 1 ]]; then
    head=secure
    secrets=(APP_PASSWORD="$(secret kafka_password)" ADMIN_PASSWORD="$(secret kafka_admin_password)"
             KEYSTORE_PASSWORD="$(secret keystore_password)")
  fi
  (umask 077; : >"$conf/server.properties.tmp")
  {
    render "kafka/server-$head.properties" VERSION="$ver" MODE="$mode" \
      KAFKA_PORT="$KAFKA_PORT" KAFKA_CONTROLLER_PORT="$KAFKA_CONTROLLER_PORT" \
      KAFKA_SASL_PLAINTEXT_PORT="$KAFKA_SASL_PLAINTEXT_PORT" ZOOKEEPER_PORT="$ZOOKEEPER_PORT" \
      TLS_DIR="$TLS_DIR" ADMIN_USER="$KAFKA_ADMIN_USER" APP_USER="$SECURE_USER" \
      NODE_ID="$KAFKA_NODE_ID" VOTERS="${KAFKA_VOTERS:-1@127.0.0.1:$KAFKA_CONTROLLER_PORT}" \
      INTERNAL_RF="$KAFKA_INTERNAL_RF" INTERNAL_MIN_ISR="$KAFKA_INTERNAL_MIN_ISR" \
      "${secrets[@]}"
    render kafka/server-common.properties DATA="$data" INTERNAL_RF="$KAFKA_INTERNAL_RF" \
      INTERNAL_MIN_ISR="$KAFKA_INTERNAL_MIN_ISR"
    [[ $(kafka_major "$ver") -lt 4 ]] ||
      render kafka/server-kafka4.properties INTERNAL_RF="$KAFKA_INTERNAL_RF" INTERNAL_MIN_ISR="$KAFKA_INTERNAL_MIN_ISR"
  } >"$conf/server.properties.tmp"          # mode 600: secure mode puts passwords in it
  mv "$conf/server.properties.tmp" "$conf/server.properties"

  if [[ $mode == zookeeper ]]; then
    render kafka/zookeeper.properties DATA="$data" ZOOKEEPER_PORT="$ZOOKEEPER_PORT" \
      >"$conf/zookeeper.properties"
  fi
  # Logging: everything to stdout, which launch_jvm appends to logs/<name>.log.
  render kafka/log4j.properties >"$conf/log4j.properties"
  render kafka/log4j2.properties >"$conf/log4j2.properties"
}

# kafka_jvm_common HEAP VERSION CONF LOGS: JVM flags + classpath, one per line.
kafka_jvm_common() {
  local heap=$1 ver=$2 conf=$3 logs=$4
  local -a opts
  # shellcheck disable=SC2206  # the heap setting is a list of JVM flags
  opts=($heap)
  opts+=(-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
         -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
         -Djava.net.preferIPv4Stack=true "-Dkafka.logs.dir=$logs")
  if [[ $(kafka_major "$ver") -ge 4 ]]; then
    opts+=("-Dlog4j2.configurationFile=$conf/log4j2.properties")
  else
    opts+=("-Dlog4j.configuration=file:$conf/log4j.properties")
  fi
  opts+=(-cp "$STACK_DIR/dist/kafka-$ver/lib/*")
  printf '%s\n' "${opts[@]}"
}

# start_kafka VERSION: formats (once) and launches the broker named $KAFKA_NODE (kafka; the
# cluster's kafka1..3), then waits for it to be healthy (the cluster waits for all at once:
# with KAFKA_NO_WAIT=1 this returns after the launch).
start_kafka() {
  local t0 ver mode conf data logs pid zkpid node=$KAFKA_NODE
  t0=$(now)
  ver=$1; mode=$KAFKA_MODE
  if [[ $mode == zookeeper && $(kafka_major "$ver") -ge 4 ]]; then
    die "KAFKA_MODE=zookeeper needs Kafka 3.x (ZooKeeper was removed in 4.0); got $ver"
  fi
  [[ $mode == kraft || $mode == zookeeper ]] || die "KAFKA_MODE must be kraft or zookeeper"
  conf=$STACK_DIR/$node/conf-$ver-$mode
  data=$STACK_DIR/$node/data-$ver-$mode
  logs=$STACK_DIR/$node/logs
  kafka_write_configs "$ver" "$mode" "$conf" "$data" "$logs"
  local -a jvm small
  mapfile -t jvm < <(kafka_jvm_common "$KAFKA_HEAP" "$ver" "$conf" "$logs")
  mapfile -t small < <(kafka_jvm_common "-Xms64m -Xmx256m" "$ver" "$conf" "$logs")

  if [[ $mode == kraft ]]; then
    # Format storage once per data dir (idempotent thanks to --ignore-formatted).
    if [[ ! -f $data/kafka-logs/meta.properties ]]; then
      local cid
      # A Kafka Uuid is 16 random bytes in URL-safe base64 (what `random-uuid` prints);
      # avoid a leading '-', which the tool's argument parser takes for an option.
      # A cluster's brokers share one id (KAFKA_CLUSTER_ID_FILE).
      cid=$(cat "${KAFKA_CLUSTER_ID_FILE:-$data/cluster-id}" 2>/dev/null || true)
      while [[ -z $cid || $cid == -* ]]; do
        cid=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
      done
      echo "$cid" >"$data/cluster-id"
      [[ -z ${KAFKA_CLUSTER_ID_FILE:-} ]] || echo "$cid" >"$KAFKA_CLUSTER_ID_FILE"
      info "$node: formatting KRaft storage (cluster id $cid)"
      local -a scram=()
      if [[ $SECURE -eq 1 ]]; then
        # SCRAM credentials of the app user live in the cluster metadata: they
        # are bootstrapped here (the password is in this JVM's argv for a moment).
        local pw; pw=$(secret kafka_password)
        scram=(--add-scram "SCRAM-SHA-256=[name=$SECURE_USER,password=$pw]"
               --add-scram "SCRAM-SHA-512=[name=$SECURE_USER,password=$pw]")
        info "kafka: adding SCRAM-SHA-256/512 credentials for '$SECURE_USER'"
      fi
      "$JAVA17_HOME/bin/java" "${small[@]}" kafka.tools.StorageTool format \
        -t "$cid" -c "$conf/server.properties" --ignore-formatted "${scram[@]}" \
        >>"$(log_file "$node")" 2>&1 || { print_log_tail "$node"; return 1; }
      if [[ $SECURE -eq 1 ]]; then kafka_scram_fingerprint >"$data/scram-fingerprint"; fi
    fi
    if [[ $SECURE -eq 1 && $(cat "$data/scram-fingerprint" 2>/dev/null) != "$(kafka_scram_fingerprint)" ]]; then
      error "kafka: the SCRAM credentials in $data were made for another"
      log "        $(secret_file kafka_password); run 'scripts/stack reset --secure' (wipes Kafka data)"
      return 1
    fi
  else
    # ZooKeeper from the same classpath, then the broker.
    zkpid=$(svc_pid zookeeper)
    if [[ -z $zkpid ]]; then
      launch_jvm "$STACK_DIR/kafka/zookeeper.pid" "$logs/zookeeper.log" \
        "${small[@]}" org.apache.zookeeper.server.quorum.QuorumPeerMain \
        "$conf/zookeeper.properties"
      zkpid=$(cat "$STACK_DIR/kafka/zookeeper.pid")
      info "kafka: zookeeper started (pid $zkpid, port $ZOOKEEPER_PORT)"
    fi
    local i
    for ((i = 0; i < 60; i++)); do
      port_listening "$ZOOKEEPER_PORT" && break
      pid_is_ours "$zkpid" || { print_log_tail zookeeper; return 1; }
      sleep 0.5
    done
  fi

  write_state "$node" VERSION="$ver" MODE="$mode" PORT="$KAFKA_PORT" \
    CONTROLLER_PORT="$KAFKA_CONTROLLER_PORT" ZOOKEEPER_PORT="$ZOOKEEPER_PORT" \
    SASL_PLAINTEXT_PORT="$KAFKA_SASL_PLAINTEXT_PORT"
  if [[ $SECURE -eq 1 ]]; then   # client files for the probe and for people
    local combo
    for combo in "${KAFKA_CLIENT_COMBOS[@]}"; do
      # shellcheck disable=SC2086  # "PROTOCOL MECHANISM"
      kafka_client_props $combo >/dev/null
    done
  fi
  launch_jvm "$(pid_file "$node")" "$(log_file "$node")" "${jvm[@]}" kafka.Kafka "$conf/server.properties"
  pid=$(cat "$(pid_file "$node")")
  if [[ ${KAFKA_NO_WAIT:-0} == 1 ]]; then
    info "$node: started $ver ($mode) pid $pid on 127.0.0.1:$KAFKA_PORT"
    return 0
  fi
  info "kafka: started $ver ($mode) pid $pid, waiting for metadata (limit $(timeout_for kafka)s)"
  wait_healthy kafka "$pid" "$KAFKA_PORT" "$t0"
}

stop_kafka() {
  stop_svc kafka
  stop_svc zookeeper
  rm -f "$(pid_file kafka)" "$STACK_DIR/kafka/zookeeper.pid"
  wait_ports_free kafka
}

kafka_probe() {
  local port=$1 auth=()
  [[ -n $(state_get kafka VERSION) ]] || return 1
  need_java
  # Secure: as the app user, SASL_SSL + SCRAM-SHA-512 (client file written at start).
  [[ $SECURE -eq 1 ]] && auth=("$(kafka_client_props SASL_SSL SCRAM-SHA-512)")
  run_probe KafkaProbe "$(dist_lib kafka)" "127.0.0.1:$port" "${auth[@]}" 2>/dev/null
}
