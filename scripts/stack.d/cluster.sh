# shellcheck shell=bash
# scripts/stack.d/cluster.sh: `scripts/stack --cluster`, a third stack beside the default and
# the secure one: three Kafka brokers (KRaft, each broker and controller in one JVM, a
# three-voter quorum) on 127.0.0.1 with distinct ports, three Cassandra nodes on 127.0.0.1,
# 127.0.0.2 and 127.0.0.3 (the loopback range; same ports, one address each), and
# PostgreSQL. Every node is started by the same functions as the single-node stack
# (start_kafka, start_cassandra, start_postgres) under its own name, id, address and ports.
# State lives in <repo>/.stack-cluster; jars are hard-linked from <repo>/.stack/dist.

CLUSTER_SIZE=3
CLUSTER_KAFKA_PORT_BASE=${CLUSTER_KAFKA_PORT_BASE:-29090}            # broker i: base + i
CLUSTER_KAFKA_CONTROLLER_BASE=${CLUSTER_KAFKA_CONTROLLER_BASE:-29190} # controller i: base + i
CLUSTER_KAFKA_HEAP=${CLUSTER_KAFKA_HEAP:--Xms256m -Xmx512m}
CLUSTER_CASSANDRA_PORT=${CLUSTER_CASSANDRA_PORT:-29042}              # on 127.0.0.i
CLUSTER_CASSANDRA_STORAGE_PORT=${CLUSTER_CASSANDRA_STORAGE_PORT:-27000}
CLUSTER_CASSANDRA_JMX_BASE=${CLUSTER_CASSANDRA_JMX_BASE:-27190}     # JMX i: base + i (127.0.0.1)
CLUSTER_CASSANDRA_HEAP=${CLUSTER_CASSANDRA_HEAP:--Xms512m -Xmx512m}
CLUSTER_POSTGRES_PORT=${CLUSTER_POSTGRES_PORT:-25432}
# One token per node, evenly spread over the Murmur3 ring (node i owns the range ending at
# its token): every node is a seed and none bootstraps, so all three start at once.
CLUSTER_TOKENS=(-9223372036854775808 -3074457345618258603 3074457345618258602)
CLUSTER_NODES=(cassandra1 cassandra2 cassandra3 kafka1 kafka2 kafka3 postgres)

cluster_usage() {
  cat <<EOF
Usage: scripts/stack --cluster <command> [node...]

Three Kafka brokers (KRaft, combined broker+controller, 3 voters), three Cassandra nodes
(one per loopback address) and PostgreSQL, for the fault tests against real clusters.
State lives in STACK_DIR (now: $STACK_DIR). Nodes: ${CLUSTER_NODES[*]}
(also: kafka = all brokers, cassandra = all Cassandra nodes).

Commands:
  up [node...]            start what is not running (idempotent) and wait for real health:
                          every broker registered and every partition's ISR complete,
                          every Cassandra node answering CQL and UN in nodetool; prints the
                          times and each node's memory
  down [node...]          stop (SIGTERM, then SIGKILL after 30 s)
  restart <node...>       down + up
  status                  one line per node plus the cluster's view; exit 0 only if healthy
  reset                   down + delete data, configs and logs (keeps jars and probes)
  logs <node> [-n N]      tail a node's log
  env                     export lines: CLUSTER_KAFKA_BOOTSTRAP, CLUSTER_CASSANDRA_CONTACT,
                          CLUSTER_DATABASE_URL
  kill9 <node>            SIGKILL the node's process
  stop-signal <node> STOP|CONT
  nodetool [args]         Cassandra's nodetool against the first running node (JMX)
  kafka-tool <class> [args]
                          a Kafka command-line tool with all three brokers as bootstrap
  --help                  this text

Addresses and ports (environment overrides in parentheses):
  kafka1..3       127.0.0.1:29091..29093 (CLUSTER_KAFKA_PORT_BASE=29090),
                  controllers 127.0.0.1:29191..29193 (CLUSTER_KAFKA_CONTROLLER_BASE=29190);
                  offsets and transaction topics RF 3 / min ISR 2, default RF 3; the
                  broker default min.insync.replicas stays 1 (the daemon sets its topic's)
  cassandra1..3   127.0.0.1..3:29042 (CLUSTER_CASSANDRA_PORT), storage :27000,
                  JMX 127.0.0.1:27191..27193 (CLUSTER_CASSANDRA_JMX_BASE=27190), SimpleSnitch
                  (datacenter1), one token each, all seeds
  postgres        127.0.0.1:25432 (CLUSTER_POSTGRES_PORT); role/password pipeline/pipeline
Heaps: CLUSTER_KAFKA_HEAP="$CLUSTER_KAFKA_HEAP"  CLUSTER_CASSANDRA_HEAP="$CLUSTER_CASSANDRA_HEAP"
EOF
}

# cluster_nodes [name...]: the node names (expanding kafka / cassandra), in start order.
cluster_nodes() {
  local n i
  if [[ $# -eq 0 ]]; then printf '%s\n' "${CLUSTER_NODES[@]}"; return; fi
  for n in "$@"; do
    case $n in
      kafka) for ((i = 1; i <= CLUSTER_SIZE; i++)); do echo "kafka$i"; done ;;
      cassandra) for ((i = 1; i <= CLUSTER_SIZE; i++)); do echo "cassandra$i"; done ;;
      kafka[1-3]|cassandra[1-3]|postgres) echo "$n" ;;
      pg|postgresql) echo postgres ;;
      *) die "unknown node '$n' (${CLUSTER_NODES[*]}, kafka, cassandra)" ;;
    esac
  done | awk '!seen[$0]++'
}

node_index() { echo "${1##*[a-z]}"; }

kafka_voters() {
  local i v=()
  for ((i = 1; i <= CLUSTER_SIZE; i++)); do v+=("$i@127.0.0.1:$((CLUSTER_KAFKA_CONTROLLER_BASE + i))"); done
  local IFS=,; echo "${v[*]}"
}

cluster_bootstrap() {
  local i v=()
  for ((i = 1; i <= CLUSTER_SIZE; i++)); do v+=("127.0.0.1:$((CLUSTER_KAFKA_PORT_BASE + i))"); done
  local IFS=,; echo "${v[*]}"
}

cluster_contact_points() {
  local i v=()
  for ((i = 1; i <= CLUSTER_SIZE; i++)); do v+=("127.0.0.$i:$CLUSTER_CASSANDRA_PORT"); done
  local IFS=,; echo "${v[*]}"
}

# node_env NODE: sets (in the calling shell: use it in a subshell) the variables the shared
# start functions read for this node.
node_env() {
  local i; i=$(node_index "$1")
  case $1 in
    kafka*)
      KAFKA_NODE=$1 KAFKA_NODE_ID=$i KAFKA_MODE=kraft KAFKA_HEAP=$CLUSTER_KAFKA_HEAP
      KAFKA_PORT=$((CLUSTER_KAFKA_PORT_BASE + i))
      KAFKA_CONTROLLER_PORT=$((CLUSTER_KAFKA_CONTROLLER_BASE + i))
      KAFKA_VOTERS=$(kafka_voters) KAFKA_INTERNAL_RF=3 KAFKA_INTERNAL_MIN_ISR=2
      KAFKA_CLUSTER_ID_FILE=$STACK_DIR/kafka-cluster-id KAFKA_NO_WAIT=1 ;;
    cassandra*)
      CASSANDRA_NODE=$1 CASSANDRA_ADDRESS=127.0.0.$i CASSANDRA_PORT=$CLUSTER_CASSANDRA_PORT
      CASSANDRA_STORAGE_PORT=$CLUSTER_CASSANDRA_STORAGE_PORT
      CASSANDRA_JMX_PORT=$((CLUSTER_CASSANDRA_JMX_BASE + i)) CASSANDRA_HEAP=$CLUSTER_CASSANDRA_HEAP
      CASSANDRA_SEEDS=$(cluster_contact_points | sed "s/:$CLUSTER_CASSANDRA_PORT/:$CLUSTER_CASSANDRA_STORAGE_PORT/g")
      CASSANDRA_INITIAL_TOKEN=${CLUSTER_TOKENS[i - 1]} CASSANDRA_CLUSTER_NAME=stack-cluster
      CASSANDRA_NO_WAIT=1 ;;
    postgres) POSTGRES_PORT=$CLUSTER_POSTGRES_PORT ;;
  esac
}

# node_ports NODE: "address port" lines the node binds.
node_ports() {
  local i; i=$(node_index "$1")
  case $1 in
    kafka*) echo "127.0.0.1 $((CLUSTER_KAFKA_PORT_BASE + i))"; echo "127.0.0.1 $((CLUSTER_KAFKA_CONTROLLER_BASE + i))" ;;
    cassandra*) echo "127.0.0.$i $CLUSTER_CASSANDRA_PORT"; echo "127.0.0.$i $CLUSTER_CASSANDRA_STORAGE_PORT"
                echo "127.0.0.1 $((CLUSTER_CASSANDRA_JMX_BASE + i))" ;;
    postgres) echo "127.0.0.1 $CLUSTER_POSTGRES_PORT" ;;
  esac
}

# addr_listening ADDRESS PORT: something listens on ADDRESS:PORT (or on the wildcard).
addr_listening() {
  ss -Hltn "sport = :$2" 2>/dev/null | awk '{print $4}' |
    grep -qE "^($(sed 's/\./\\./g' <<<"$1")|0\.0\.0\.0|\*|\[::\]):$2$"
}

node_address() {
  case $1 in
    cassandra*) echo "127.0.0.$(node_index "$1"):$CLUSTER_CASSANDRA_PORT" ;;
    kafka*) echo "127.0.0.1:$((CLUSTER_KAFKA_PORT_BASE + $(node_index "$1")))" ;;
    postgres) echo "127.0.0.1:$CLUSTER_POSTGRES_PORT" ;;
  esac
}

lib_of() { echo "$STACK_DIR/dist/$1-$(state_get "$2" VERSION)/lib"; }

# node_probe NODE: one line, exit 0 when the node itself answers a real request.
node_probe() {
  local pid; pid=$(svc_pid "$1")
  [[ -n $pid && $(proc_state "$pid") != T ]] || return 1
  case $1 in
    kafka*) addr_listening 127.0.0.1 "$((CLUSTER_KAFKA_PORT_BASE + $(node_index "$1")))" || return 1
            run_probe KafkaProbe "$(lib_of kafka "$1")" "$(node_address "$1")" 2>/dev/null ;;
    cassandra*) addr_listening "127.0.0.$(node_index "$1")" "$CLUSTER_CASSANDRA_PORT" || return 1
                run_probe CqlProbe "$(lib_of cassandra "$1")" "127.0.0.$(node_index "$1")" \
                  "$CLUSTER_CASSANDRA_PORT" 2>/dev/null ;;
    postgres) (node_env postgres; postgres_probe "$CLUSTER_POSTGRES_PORT") ;;
  esac
}

# kafka_cluster_probe N: all N brokers registered and no partition with an incomplete ISR.
kafka_cluster_probe() {
  local first; first=$(cluster_nodes kafka | head -n1)
  run_probe KafkaProbe "$(lib_of kafka "$first")" "$(cluster_bootstrap)" "--expect-brokers=$1" 2>/dev/null
}

# cluster_nodetool ARGS...: nodetool against the first Cassandra node that runs.
cluster_nodetool() {
  local n i pid
  for n in $(cluster_nodes cassandra); do
    pid=$(svc_pid "$n")
    [[ -n $pid && $(proc_state "$pid") != T ]] || continue
    i=$(node_index "$n")
    # (a bounded wait: JMX to a node that stops answering would hang)
    timeout "${NODETOOL_TIMEOUT:-30}" "$JAVA17_HOME/bin/java" -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
      "${CASSANDRA_MODULE_FLAGS[@]}" -Dlogback.configurationFile="$STACK_DIR/tools/quiet-logback.xml" \
      -cp "$(lib_of cassandra "$n")/*" org.apache.cassandra.tools.NodeTool \
      -h 127.0.0.1 -p "$((CLUSTER_CASSANDRA_JMX_BASE + i))" "$@"
    return
  done
  error "no Cassandra node of the cluster is running"; return 1
}

# cassandra_ring_probe N: nodetool status shows N nodes Up/Normal; prints "UN=<n> of <total>".
cassandra_ring_probe() {
  local out un total
  out=$(cluster_nodetool status 2>/dev/null) || return 1
  un=$(grep -cE '^UN ' <<<"$out" || true)
  total=$(grep -cE '^[UD][NLJM] ' <<<"$out" || true)
  echo "UN=$un of $total"
  [[ $un -ge $1 ]]
}

node_rss_mb() {
  local pid; pid=$(svc_pid "$1")
  [[ -n $pid ]] || { echo -; return; }
  awk '/VmRSS/ { printf "%d", $2 / 1024 }' "/proc/$pid/status" 2>/dev/null || echo -
}

cluster_up() {
  local -a want todo=()
  mapfile -t want < <(cluster_nodes "$@")
  take_lock
  need_ss; need_java
  local t0 n pid rc=0 conflict=0 kv cv
  t0=$(now)
  echo cluster >"$STACK_DIR/.mode"
  for n in "${want[@]}"; do
    pid=$(svc_pid "$n")
    if [[ -n $pid ]]; then
      [[ $(proc_state "$pid") == T ]] && die "$n (pid $pid) is stopped: 'scripts/stack --cluster stop-signal $n CONT'"
      info "$n: running (pid $pid)"
      continue
    fi
    todo+=("$n")
  done
  for n in "${todo[@]}"; do
    local addr port
    while read -r addr port; do
      if addr_listening "$addr" "$port"; then
        error "$addr:$port needed by $n is in use: $(ss -Hltnp "sport = :$port" | head -n1 | tr -s ' ')"
        conflict=1
      fi
    done < <(node_ports "$n")
  done
  [[ $conflict -eq 0 ]] || die "port conflict: nothing was started"
  printf '%s\n' "${todo[@]}" | grep -q '^postgres$' && need_postgres
  kv=$(ensure_dist kafka "$KAFKA_VERSION" "$KAFKA_DEFAULT_CANDIDATES")
  cv=$(ensure_dist cassandra "$CASSANDRA_VERSION" "$CASSANDRA_DEFAULT_CANDIDATES")
  ensure_probe KafkaProbe "$STACK_DIR/dist/kafka-$kv/lib" >/dev/null
  ensure_probe CqlProbe "$STACK_DIR/dist/cassandra-$cv/lib" >/dev/null

  # Launch everything at once (every Cassandra node is a seed with its own token, so none
  # waits for another; the brokers elect a controller as soon as two voters are up).
  local -a bg=()
  for n in "${todo[@]}"; do
    mkdir -p "$STACK_DIR/$n/logs"
    rm -f "$(pid_file "$n")"
    case $n in
      kafka*) ( node_env "$n"; start_kafka "$kv" ) || rc=1 ;;
      cassandra*) ( node_env "$n"; start_cassandra "$cv" ) || rc=1 ;;
      postgres) ( node_env postgres; start_postgres ) & bg+=($!) ;;
    esac
  done
  for pid in "${bg[@]}"; do wait "$pid" || rc=1; done
  [[ $rc -eq 0 ]] || die "cluster: a node failed to start (see scripts/stack --cluster logs <node>)"

  # Real health: every node answers, then the cluster's own view is complete.
  local deadline out limit=${STACK_TIMEOUT:-300} brokers=0 cnodes=0 ok
  deadline=$(( $(date +%s) + limit ))
  for n in "${want[@]}"; do
    [[ $n == kafka* ]] && brokers=$((brokers + 1))
    [[ $n == cassandra* ]] && cnodes=$((cnodes + 1))
  done
  # The cluster checks want every node of its kind running, not only the ones asked for.
  for n in $(cluster_nodes kafka); do [[ -n $(svc_pid "$n") ]] || brokers=0; done
  for n in $(cluster_nodes cassandra); do [[ -n $(svc_pid "$n") ]] || cnodes=0; done
  for n in "${want[@]}"; do
    while :; do
      pid=$(svc_pid "$n")
      [[ -n $pid ]] || { error "$n exited during start-up"; print_log_tail "$n"; return 1; }
      if out=$(node_probe "$n"); then
        info "$n: healthy after $(since "$t0")s on $(node_address "$n") ($(tr '\n' ' ' <<<"$out" | sed 's/ *$//'))"
        break
      fi
      (( $(date +%s) < deadline )) || { error "$n not healthy after ${limit}s"; print_log_tail "$n"; return 1; }
      sleep 1
    done
  done
  if [[ $brokers -gt 0 ]]; then
    ok=0
    while (( $(date +%s) < deadline )); do
      if out=$(kafka_cluster_probe "$CLUSTER_SIZE"); then ok=1; break; fi
      sleep 1
    done
    [[ $ok -eq 1 ]] || { error "kafka: the cluster is not complete after ${limit}s: $out"; return 1; }
    info "kafka: all $CLUSTER_SIZE brokers in, every ISR complete, after $(since "$t0")s ($out)"
  fi
  if [[ $cnodes -gt 0 ]]; then
    ok=0
    while (( $(date +%s) < deadline )); do
      if out=$(cassandra_ring_probe "$CLUSTER_SIZE"); then ok=1; break; fi
      sleep 2
    done
    [[ $ok -eq 1 ]] || { error "cassandra: not all nodes UN after ${limit}s: ${out:-nodetool failed}"; return 1; }
    info "cassandra: $out (nodetool status) after $(since "$t0")s"
  fi
  local mem="" total=0 m
  for n in "${CLUSTER_NODES[@]}"; do
    m=$(node_rss_mb "$n"); mem+=" $n=${m}MB"
    [[ $m == - ]] || total=$((total + m))
  done
  info "up: done in $(since "$t0")s; RSS:$mem; total ${total} MB"
}

cluster_down() {
  local -a nodes; mapfile -t nodes < <(cluster_nodes "$@")
  take_lock
  local i n pid
  for ((i = ${#nodes[@]} - 1; i >= 0; i--)); do
    n=${nodes[i]}
    case $n in
      postgres) (node_env postgres; stop_postgres) ;;
      *) pid=$(svc_pid "$n"); [[ -z $pid ]] || stop_pid "$n" "$pid"; rm -f "$(pid_file "$n")" ;;
    esac
  done
  # Wait for the ports: an immediate `up` must not see the old sockets.
  local addr port k
  for n in "${nodes[@]}"; do
    while read -r addr port; do
      for ((k = 0; k < 60; k++)); do addr_listening "$addr" "$port" || break; sleep 0.5; done
    done < <(node_ports "$n")
  done
  return 0
}

cluster_status() {
  local n pid running healthy out rc=0 rows=()
  for n in "${CLUSTER_NODES[@]}"; do
    pid=$(svc_pid "$n"); running=no; healthy=no; out=""
    if [[ -n $pid ]]; then
      running=yes
      if [[ $(proc_state "$pid") == T ]]; then running=stopped
      elif out=$(node_probe "$n"); then healthy=yes; fi
    fi
    [[ $healthy == yes ]] || rc=1
    rows+=("$n|$running|${pid:--}|$(node_address "$n")|$(node_rss_mb "$n")|$healthy|$(head -n1 <<<"$out" | cut -c1-60)")
  done
  print_table '%-11s %-8s %-8s %-17s %-7s %-8s %s\n' "NODE|RUNNING|PID|ADDRESS|RSS_MB|HEALTHY|ANSWER" "${rows[@]}"
  if out=$(kafka_cluster_probe "$CLUSTER_SIZE"); then echo "kafka cluster: $out"
  else echo "kafka cluster: INCOMPLETE ${out:-(no answer)}"; rc=1; fi
  if out=$(cassandra_ring_probe "$CLUSTER_SIZE"); then echo "cassandra ring: $out"
  else echo "cassandra ring: INCOMPLETE ${out:-(nodetool failed)}"; rc=1; fi
  return "$rc"
}

cluster_env() {
  printf 'export %s=%q\n' \
    CLUSTER_KAFKA_BOOTSTRAP "$(cluster_bootstrap)" \
    CLUSTER_CASSANDRA_CONTACT "$(cluster_contact_points)" \
    CLUSTER_DATABASE_URL "postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$CLUSTER_POSTGRES_PORT/$PG_DB"
}

cluster_signal() {
  local n sig=$2 pid
  n=$(cluster_nodes "$1")
  [[ $(wc -l <<<"$n") -eq 1 ]] || die "one node at a time: $1"
  pid=$(svc_pid "$n")
  [[ -n $pid ]] || die "$n is not running"
  info "$n: kill -$sig $pid"
  kill "-$sig" "$pid"
}

cluster_main() {
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  local m; m=$(cat "$STACK_DIR/.mode" 2>/dev/null || true)
  case $cmd in ""|-h|--help|help) ;;
    *) [[ -z $m || $m == cluster ]] || die "$STACK_DIR holds a '$m' stack, not a cluster" ;;
  esac
  case $cmd in
    up) cluster_up "$@" ;;
    down) cluster_down "$@" ;;
    restart) [[ $# -ge 1 ]] || die "usage: scripts/stack --cluster restart <node>..."
             cluster_down "$@"; exec 9>&-; cluster_up "$@" ;;
    status) need_java; cluster_status ;;
    reset) cluster_down
           info "reset: deleting data, configs and logs (keeping $STACK_DIR/dist and tools)"
           local n; for n in "${CLUSTER_NODES[@]}"; do rm -rf "${STACK_DIR:?}/$n"; done
           rm -f "$STACK_DIR/kafka-cluster-id"; (node_env postgres; rm -rf "$(pg_run_dir)") ;;
    logs) [[ $# -ge 1 ]] || die "usage: scripts/stack --cluster logs <node> [-n N]"
          local node; node=$(cluster_nodes "$1"); shift
          tail -n "$([[ ${1:-} == -n ]] && echo "${2:-100}" || echo 100)" "$(log_file "$node")" ;;
    env) cluster_env ;;
    kill9) [[ $# -eq 1 ]] || die "usage: scripts/stack --cluster kill9 <node>"; cluster_signal "$1" KILL ;;
    stop-signal)
      [[ $# -eq 2 && ( $2 == STOP || $2 == CONT ) ]] || die "usage: scripts/stack --cluster stop-signal <node> STOP|CONT"
      cluster_signal "$1" "$2" ;;
    nodetool) need_java; cluster_nodetool "$@" ;;
    kafka-tool) KAFKA_TOOL_BOOTSTRAP=$(cluster_bootstrap) cmd_kafka_tool "$@" ;;
    -h|--help|help) cluster_usage ;;
    "") cluster_usage; exit 2 ;;
    *) log "unknown command: $cmd"; cluster_usage >&2; exit 2 ;;
  esac
}
