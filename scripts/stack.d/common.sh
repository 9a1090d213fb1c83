# shellcheck shell=bash
# scripts/stack.d/common.sh: what every service shares: messages, the files a
# service keeps under STACK_DIR (pid, state, log), ports, config templates and
# the life of a process (launch, health wait, stop). Sourced by scripts/stack.

# ---------------------------------------------------------------------------
# Messages and time
# ---------------------------------------------------------------------------
log()   { printf '%s\n' "$*" >&2; }
info()  { printf '[stack] %s\n' "$*" >&2; }
error() { printf '[stack] ERROR: %s\n' "$*" >&2; }
die()   { error "$@"; exit 1; }
now()   { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Default health timeout per service; STACK_TIMEOUT overrides all of them.
timeout_for() {
  if [[ -n ${STACK_TIMEOUT:-} ]]; then echo "$STACK_TIMEOUT"; return; fi
  case $1 in cassandra) echo 300 ;; kafka) echo 180 ;; postgres) echo 60 ;; registry) echo 120 ;; esac
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# ---------------------------------------------------------------------------
# A service's files under STACK_DIR/<service>/
# ---------------------------------------------------------------------------
pid_file() { echo "$STACK_DIR/$1/$1.pid"; }          # kafka.pid, zookeeper.pid lives in kafka/
state_file() { echo "$STACK_DIR/$1/state"; }
log_file() {
  case $1 in
    zookeeper) echo "$STACK_DIR/kafka/logs/zookeeper.log" ;;
    *) echo "$STACK_DIR/$1/logs/$1.log" ;;
  esac
}

# proc_state PID: the process state letter from /proc (R, S, T = stopped, Z = zombie...).
proc_state() { awk '{print $3}' "/proc/$1/stat" 2>/dev/null; }

# True if pid is alive and its command line mentions our STACK_DIR: a pid that
# was reused by some unrelated process is never treated as ours.
pid_is_ours() {
  local pid=$1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$STACK_DIR/"
}

# Pid of a service if it is running (and ours); empty otherwise.
# zookeeper is tracked in kafka/zookeeper.pid; postgres in its postmaster.pid.
svc_pid() {
  local f pid
  case $1 in
    postgres) f=$STACK_DIR/postgres/data/postmaster.pid ;;
    zookeeper) f=$STACK_DIR/kafka/zookeeper.pid ;;
    *) f=$(pid_file "$1") ;;
  esac
  [[ -r $f ]] || return 0
  pid=$(head -n1 "$f" 2>/dev/null || true)
  if pid_is_ours "$pid"; then echo "$pid"; fi
}

# write_state SERVICE KEY=VALUE...: the service's state file, written at start
# (what `status`, `env` and a later `up` need to know of the running instance).
write_state() {
  local svc=$1; shift
  printf '%s\n' "$@" >"$(state_file "$svc")"
}

# Read KEY from a service's state file (written at start).
state_get() {
  local f; f=$(state_file "$1")
  [[ -r $f ]] || return 0
  sed -n "s/^$2=//p" "$f" | tail -n1
}

# Effective port: the running instance's port wins over the configured one.
effective_port() {
  local svc=$1 p=""
  if [[ -n $(svc_pid "$svc") ]]; then p=$(state_get "$svc" PORT); fi
  if [[ -z $p ]]; then
    case $svc in
      kafka) p=$KAFKA_PORT ;; cassandra) p=$CASSANDRA_PORT ;; postgres) p=$POSTGRES_PORT ;;
      zookeeper) p=$ZOOKEEPER_PORT ;; registry) p=$REGISTRY_PORT ;;
    esac
  fi
  echo "$p"
}

# ---------------------------------------------------------------------------
# Config templates (stack.d/templates/)
# ---------------------------------------------------------------------------
# render TEMPLATE [KEY=VALUE...]: prints templates/TEMPLATE with every @KEY@
# replaced by VALUE, byte for byte otherwise. Pure bash rather than sed or
# envsubst: values include secrets, which must never reach a process's argv,
# and envsubst is not installed everywhere. A placeholder without a value is
# a bug in the caller: it stops the script instead of writing a broken config.
render() {
  local name=$1 text kv key rest; shift
  [[ -r $TEMPLATE_DIR/$name ]] || die "template $TEMPLATE_DIR/$name is missing"
  IFS= read -r -d '' text <"$TEMPLATE_DIR/$name" || true
  rest=$text
  while [[ $rest =~ @([A-Z][A-Z0-9_]*)@ ]]; do
    key=${BASH_REMATCH[1]}; rest=${rest#*"@$key@"}
    for kv in "$@"; do [[ ${kv%%=*} == "$key" ]] && continue 2; done
    die "template $name: no value for @$key@"
  done
  for kv in "$@"; do
    text=${text//"@${kv%%=*}@"/"${kv#*=}"}
  done
  printf '%s' "$text"
}

# ---------------------------------------------------------------------------
# Ports: fail fast if a port is taken by anything but our own service pid
# ---------------------------------------------------------------------------
port_listening() { [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }

# check_port PORT WHAT [OUR_PID]: prints a clear message and returns 1 on conflict.
check_port() {
  local port=$1 what=$2 ours=${3:-} line pids pid owner cmd
  line=$(ss -Hltnp "sport = :$port" 2>/dev/null || true)
  [[ -z $line ]] && return 0
  pids=$(grep -oE 'pid=[0-9]+' <<<"$line" | cut -d= -f2 | sort -u || true)
  if [[ -n $ours ]] && grep -qx "$ours" <<<"$pids"; then return 0; fi
  owner="unknown process (run as root to see it)"
  for pid in $pids; do
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-160 || true)
    owner="pid $pid ($(cat "/proc/$pid/comm" 2>/dev/null || echo '?'): $cmd)"
    if pid_is_ours "$pid"; then
      owner+=" - an untracked process of this stack; kill it or run: kill $pid"
    fi
    break
  done
  # Debian's default postgres cluster is the classic 5432 conflict.
  if [[ $what == postgres* ]] && command -v pg_lsclusters >/dev/null; then
    local deb
    deb=$(pg_lsclusters -h 2>/dev/null | awk -v p="$port" '$3 == p && $4 == "online" { print $1 "/" $2 }')
    [[ -n $deb ]] && owner+="; this is the Debian cluster $deb: stop it with 'pg_ctlcluster ${deb%/*} ${deb#*/} stop' or set POSTGRES_PORT"
  fi
  error "port $port needed by $what is already in use by $owner"
  log "        ss: $(head -n1 <<<"$line" | tr -s ' ')"
  return 1
}

# wait_ports_free SERVICE: after a stop, wait (up to 30 s) until the service's ports are
# released, so that an immediate `up` (restart) does not see its own old sockets as a conflict.
wait_ports_free() {
  local entry port i
  while IFS= read -r entry; do
    port=${entry%%|*}
    [[ -n $port ]] || continue
    for ((i = 0; i < 60; i++)); do
      port_listening "$port" || break
      sleep 0.5
    done
  done < <(svc_ports "$1")
  return 0
}

# svc_ports SERVICE: "port|label" lines of every port the service will bind.
svc_ports() {
  local pv=""; [[ $SECURE -eq 1 ]] && pv=SECURE_
  case $1 in
    kafka)
      if [[ $SECURE -eq 1 ]]; then
        echo "$KAFKA_PORT|kafka SASL_SSL (SECURE_KAFKA_PORT)"
        echo "$KAFKA_SASL_PLAINTEXT_PORT|kafka SASL_PLAINTEXT (SECURE_KAFKA_SASL_PLAINTEXT_PORT)"
        echo "$KAFKA_CONTROLLER_PORT|kafka controller (SECURE_KAFKA_CONTROLLER_PORT)"
        return
      fi
      echo "$KAFKA_PORT|kafka (KAFKA_PORT)"
      if [[ $KAFKA_MODE == zookeeper ]]; then
        [[ -n $(svc_pid zookeeper) ]] || echo "$ZOOKEEPER_PORT|zookeeper (ZOOKEEPER_PORT)"
      else
        echo "$KAFKA_CONTROLLER_PORT|kafka controller (KAFKA_CONTROLLER_PORT)"
      fi ;;
    cassandra)
      echo "$CASSANDRA_PORT|cassandra (${pv}CASSANDRA_PORT)"
      echo "$CASSANDRA_STORAGE_PORT|cassandra storage (${pv}CASSANDRA_STORAGE_PORT)"
      [[ $CASSANDRA_JMX_PORT == 0 ]] || echo "$CASSANDRA_JMX_PORT|cassandra JMX (${pv}CASSANDRA_JMX_PORT; 0 disables)" ;;
    postgres)
      echo "$POSTGRES_PORT|postgres (${pv}POSTGRES_PORT)" ;;
    registry)
      echo "$REGISTRY_PORT|registry (${pv}REGISTRY_PORT)"
      echo "$REGISTRY_MANAGEMENT_PORT|registry management (${pv}REGISTRY_MANAGEMENT_PORT)" ;;
  esac
}

# ---------------------------------------------------------------------------
# Process management
# ---------------------------------------------------------------------------
# launch_jvm PIDFILE LOGFILE JAVA_ARGS...: starts a detached JVM (own session,
# no stdin, output to LOGFILE) and records its pid. The pid is the JVM's own:
# setsid/setpriv exec in place. LAUNCH_JAVA: another java than Java 17's.
# LAUNCH_NO_MLOCK=1: make mlockall() fail (Cassandra locks its whole heap in RAM
# when it can, which costs ~2 s of start-up and keeps the full heap resident).
launch_jvm() {
  local pidf=$1 logf=$2; shift 2
  local -a wrap=(setsid)
  mkdir -p "$(dirname "$logf")"
  echo "===== $(date -Is) starting: java $*" >>"$logf"
  if [[ ${LAUNCH_NO_MLOCK:-0} == 1 ]] && is_root && command -v setpriv >/dev/null; then
    wrap+=(setpriv --bounding-set=-ipc_lock --inh-caps=-ipc_lock)
  fi
  (
    [[ ${LAUNCH_NO_MLOCK:-0} == 1 ]] && ulimit -l 64 2>/dev/null
    exec "${wrap[@]}" "${LAUNCH_JAVA:-$JAVA17_HOME/bin/java}" "$@"
  ) </dev/null >>"$logf" 2>&1 9>&- &   # 9>&-: never pass on the stack lock
  echo $! >"$pidf"
}

# stop_pid NAME PID: SIGTERM, wait up to 30 s, then SIGKILL. Only our pids.
stop_pid() {
  local name=$1 pid=$2 i
  pid_is_ours "$pid" || return 0
  info "$name: stopping pid $pid (SIGTERM)"
  kill -CONT "$pid" 2>/dev/null || true   # a SIGSTOPped JVM cannot handle SIGTERM
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    pid_is_ours "$pid" || { info "$name: stopped"; return 0; }
    sleep 0.1
  done
  info "$name: still alive after 30 s, sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do pid_is_ours "$pid" || return 0; sleep 0.1; done
  info "$name: WARNING pid $pid survived SIGKILL"
}

# stop_svc NAME: stop_pid on the service's pid, if it is running.
stop_svc() {
  local pid; pid=$(svc_pid "$1")
  if [[ -n $pid ]]; then stop_pid "$1" "$pid"; fi
}

# print_table FORMAT ROW...: each "a|b|c" ROW printed with printf FORMAT (the header first).
print_table() {
  local format=$1 row; shift
  local -a f
  for row in "$@"; do
    IFS='|' read -r -a f <<<"$row"
    # shellcheck disable=SC2059  # the format is the caller's
    printf "$format" "${f[@]}"
  done
}

print_log_tail() {
  local f n=${2:-$LOG_TAIL_ON_FAILURE}
  f=$(log_file "$1")
  log "----- last $n lines of $f -----"
  tail -n "$n" "$f" >&2 2>/dev/null || log "(no log)"
  log "-----"
}

# wait_healthy SERVICE PID PORT START_TS: waits for the port, then for a real
# request to succeed. Fails early if the process dies.
wait_healthy() {
  local svc=$1 pid=$2 port=$3 t0=$4 limit deadline out prepared=0 next_prep=0
  limit=$(timeout_for "$svc")
  deadline=$(( $(date +%s) + limit ))
  while (( $(date +%s) < deadline )); do
    if [[ -n $pid ]] && ! pid_is_ours "$pid"; then
      error "$svc (pid $pid) exited during start-up"
      print_log_tail "$svc"; return 1
    fi
    if [[ -n $pid && $(proc_state "$pid") == T ]]; then
      error "$svc (pid $pid) is stopped (SIGSTOP): 'scripts/stack stop-signal $svc CONT' resumes it"
      return 1
    fi
    # Cheap check first: each probe is a JVM start, so only probe once the port is open.
    if port_listening "$port"; then
      # Secure Cassandra: the app role must exist before the app user can probe.
      if [[ $prepared -eq 0 && $SECURE -eq 1 && $svc == cassandra ]]; then
        if (( $(date +%s) >= next_prep )); then
          if cassandra_secure_bootstrap "$port"; then
            prepared=1
          else
            next_prep=$(( $(date +%s) + 2 ))
          fi
        fi
      else
        prepared=1
      fi
      if [[ $prepared -eq 1 ]] && out=$(probe "$svc"); then
        info "$svc: healthy after $(since "$t0")s on 127.0.0.1:$port ($(tr '\n' ' ' <<<"$out" | sed 's/ *$//'))"
        return 0
      fi
    fi
    sleep 0.5
  done
  error "$svc not healthy after ${limit}s (STACK_TIMEOUT to change); it is left running for inspection, 'scripts/stack down $svc$SFX' stops it"
  if [[ $SECURE -eq 1 && $svc == cassandra && $prepared -eq 0 ]]; then
    log "[stack] cassandra: role bootstrap did not succeed; last errors ($STACK_DIR/cassandra/logs/bootstrap.err):"
    tail -n 5 "$STACK_DIR/cassandra/logs/bootstrap.err" >&2 2>/dev/null || true
  fi
  print_log_tail "$svc"
  return 1
}
