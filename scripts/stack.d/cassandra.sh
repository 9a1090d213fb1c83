# shellcheck shell=bash
# scripts/stack.d/cassandra.sh: a single Cassandra 5.0 node from Maven Central
# jars; in secure mode client TLS, PasswordAuthenticator and the app role.
# Configs: templates/cassandra/.

cassandra_deps_xml() { dep_xml org.apache.cassandra cassandra-all "$1"; }

# cassandra_write_configs CONF DATA LOGS: cassandra.yaml (the shared part, then
# the secure or the open auth settings) and logback.xml, at every start.
cassandra_write_configs() {
  local conf=$1 data=$2 logs=$3
  mkdir -p "$conf" "$data" "$logs"
  (umask 077; : >"$conf/cassandra.yaml")   # mode 600: secure mode puts the keystore password in it
  {
    render cassandra/cassandra.yaml CASSANDRA_PORT="$CASSANDRA_PORT" \
      CASSANDRA_STORAGE_PORT="$CASSANDRA_STORAGE_PORT" DATA="$data" \
      CLUSTER_NAME="$CASSANDRA_CLUSTER_NAME" INITIAL_TOKEN="$CASSANDRA_INITIAL_TOKEN" \
      ADDRESS="$CASSANDRA_ADDRESS" SEEDS="${CASSANDRA_SEEDS:-$CASSANDRA_ADDRESS:$CASSANDRA_STORAGE_PORT}"
    if [[ $SECURE -eq 1 ]]; then
      render cassandra/auth-secure.yaml TLS_DIR="$TLS_DIR" KEYSTORE_PASSWORD="$(secret keystore_password)"
    else
      render cassandra/auth-plain.yaml
    fi
  } >"$conf/cassandra.yaml"
  render cassandra/logback.xml >"$conf/logback.xml"
}

# The module flags of Cassandra's conf/jvm17-server.options: the server and its tools
# (nodetool) need them on Java 17.
CASSANDRA_MODULE_FLAGS=(
  --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
  --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
  --add-exports java.sql/java.sql=ALL-UNNAMED
  --add-exports java.base/java.lang.ref=ALL-UNNAMED
  --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
  --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
  --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
  --add-opens java.base/java.lang.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
  --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
  --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
  --add-opens java.base/jdk.internal.math=ALL-UNNAMED
  --add-opens java.base/jdk.internal.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
  --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
  --add-opens java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens java.base/java.io=ALL-UNNAMED
  --add-opens java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
  --add-opens java.base/java.lang=ALL-UNNAMED
  --add-opens java.base/java.util=ALL-UNNAMED
)

# JVM flags: the module flags of Cassandra's conf/jvm17-server.options plus
# the relevant parts of jvm-server.options, sized for a small dev box.
cassandra_jvm_opts() {
  local conf=$1 data=$2 logs=$3 ver=$4
  local -a o
  # shellcheck disable=SC2206  # CASSANDRA_HEAP is a list of JVM flags
  o=($CASSANDRA_HEAP)
  o+=(-Xss256k -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1
      -XX:G1HeapRegionSize=16m -XX:G1RSetUpdatingPauseTimePercent=5 -XX:MaxGCPauseMillis=300
      -XX:InitiatingHeapOccupancyPercent=70 -XX:+UseTLAB -XX:+ResizeTLAB -XX:+PerfDisableSharedMem
      -XX:StringTableSize=1000003 -XX:+ExitOnOutOfMemoryError
      -Djava.net.preferIPv4Stack=true -Djava.awt.headless=true
      -Djdk.attach.allowAttachSelf=true
      "${CASSANDRA_MODULE_FLAGS[@]}"
      -Dio.netty.tryReflectionSetAccessible=true
      -Dio.netty.allocator.useCacheForAllThreads=true
      -Dio.netty.allocator.maxOrder=11
      -Dcassandra-foreground=yes
      -Dcassandra.skip_wait_for_gossip_to_settle=0
      "-Dcassandra.config=file://$conf/cassandra.yaml"
      "-Dcassandra.storagedir=$data"
      "-Dcassandra.logdir=$logs"
      "-Dlogback.configurationFile=$conf/logback.xml"
      "-Djava.io.tmpdir=$data/tmp")
  # Secure mode: create the default superuser right away (default: 10 s later).
  [[ $SECURE -eq 1 ]] && o+=(-Dcassandra.superuser_setup_delay_ms=0)
  if [[ $CASSANDRA_JMX_PORT != 0 ]]; then
    # Local-only JMX (binds to loopback), like cassandra-env.sh's LOCAL_JMX=yes.
    o+=("-Dcassandra.jmx.local.port=$CASSANDRA_JMX_PORT" -Djava.rmi.server.hostname=127.0.0.1)
  fi
  o+=(-cp "$STACK_DIR/dist/cassandra-$ver/lib/*" org.apache.cassandra.service.CassandraDaemon)
  printf '%s\n' "${o[@]}"
}

# start_cassandra VERSION: launches the node named $CASSANDRA_NODE (cassandra; the cluster's
# cassandra1..3) and waits for CQL (CASSANDRA_NO_WAIT=1: returns after the launch).
start_cassandra() {
  local t0 ver conf data logs pid node=$CASSANDRA_NODE
  t0=$(now); ver=$1
  conf=$STACK_DIR/$node/conf
  data=$STACK_DIR/$node/data
  logs=$STACK_DIR/$node/logs
  # Data written by another Cassandra version may not be readable: keep it apart.
  if [[ -f $data/VERSION && $(cat "$data/VERSION") != "$ver" ]]; then
    die "cassandra: data dir was created by $(cat "$data/VERSION"), not $ver: run 'scripts/stack reset$SFX' or use CASSANDRA_VERSION=$(cat "$data/VERSION")"
  fi
  cassandra_write_configs "$conf" "$data" "$logs"
  mkdir -p "$data/tmp"; echo "$ver" >"$data/VERSION"
  write_state "$node" VERSION="$ver" PORT="$CASSANDRA_PORT" ADDRESS="$CASSANDRA_ADDRESS" \
    STORAGE_PORT="$CASSANDRA_STORAGE_PORT" JMX_PORT="$CASSANDRA_JMX_PORT"
  local -a jvm; mapfile -t jvm < <(cassandra_jvm_opts "$conf" "$data" "$logs" "$ver")
  LAUNCH_NO_MLOCK=1 launch_jvm "$(pid_file "$node")" "$(log_file "$node")" "${jvm[@]}"
  pid=$(cat "$(pid_file "$node")")
  if [[ ${CASSANDRA_NO_WAIT:-0} == 1 ]]; then
    info "$node: started $ver pid $pid on $CASSANDRA_ADDRESS:$CASSANDRA_PORT"
    return 0
  fi
  info "cassandra: started $ver pid $pid, waiting for CQL (limit $(timeout_for cassandra)s)"
  wait_healthy cassandra "$pid" "$CASSANDRA_PORT" "$t0"
}

# Secure mode: idempotent role setup through CQL over TLS as the superuser:
# role pipeline (login, not superuser) with CREATE/ALTER/MODIFY/SELECT on all
# keyspaces (it owns, hence may drop, what it creates); on the first run the
# well-known cassandra/cassandra superuser password is replaced by
# secrets/cassandra_admin_password. Secrets reach the probe as file references.
# Passwords are only set when needed: Cassandra 5 refuses to change a role's
# password twice within 5 s.
cassandra_secure_bootstrap() {
  local port=$1 d=$STACK_DIR/cassandra err u=$SECURE_USER
  local -a cql files
  err=$d/logs/bootstrap.err
  cql=(run_probe CqlProbe "$(dist_lib cassandra)" 127.0.0.1 "$port" --ca "$TLS_DIR/ca.pem")
  files=(APP_USER="$u" APP_PASSWORD_FILE="$(secret_file cassandra_password)"
         ADMIN_PASSWORD_FILE="$(secret_file cassandra_admin_password)")
  render cassandra/bootstrap.cql "${files[@]}" >"$d/bootstrap.cql"
  { cat "$d/bootstrap.cql"
    render cassandra/rotate-superuser.cql "${files[@]}"
  } >"$d/bootstrap-first.cql"
  render cassandra/set-password.cql "${files[@]}" >"$d/set-password.cql"

  # Our superuser password first; the default one only works before the first rotation.
  if ! "${cql[@]}" --user cassandra --password-file "$(secret_file cassandra_admin_password)" \
         --exec "$d/bootstrap.cql" >/dev/null 2>"$err"; then
    grep -q AuthenticationException "$err" || return 1
    "${cql[@]}" --user cassandra --password cassandra --exec "$d/bootstrap-first.cql" >/dev/null 2>>"$err" ||
      return 1
    info "cassandra: role '$u' ready; 'cassandra' superuser password rotated ($(secret_file cassandra_admin_password))"
  fi
  # The role may predate the current password file: (re)set the password then.
  if ! "${cql[@]}" --user "$u" --password-file "$(secret_file cassandra_password)" >/dev/null 2>>"$err"; then
    grep -q AuthenticationException "$err" || return 1
    info "cassandra: setting the password of role '$u' from $(secret_file cassandra_password)"
    "${cql[@]}" --user cassandra --password-file "$(secret_file cassandra_admin_password)" \
      --exec "$d/set-password.cql" >/dev/null 2>>"$err" || return 1
  fi
  date -Is >"$d/data/auth-bootstrapped"   # data dir: a reset forgets it
  return 0
}

stop_cassandra() {
  stop_svc cassandra
  rm -f "$(pid_file cassandra)"
  wait_ports_free cassandra
}

cassandra_probe() {
  local port=$1 auth=()
  [[ -n $(state_get cassandra VERSION) ]] || return 1
  need_java
  # Secure: as the app user, over TLS with hostname verification against our CA.
  [[ $SECURE -eq 1 ]] &&
    auth=(--ca "$TLS_DIR/ca.pem" --user "$SECURE_USER" --password-file "$(secret_file cassandra_password)")
  run_probe CqlProbe "$(dist_lib cassandra)" 127.0.0.1 "$port" "${auth[@]}" 2>/dev/null
}
