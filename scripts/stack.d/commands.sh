# shellcheck shell=bash
# scripts/stack.d/commands.sh: the commands of scripts/stack (up, down,
# restart, status, reset, logs, env, kill9 / stop-signal); main() in
# scripts/stack dispatches to them.

parse_services() {
  local s
  if [[ $# -eq 0 ]]; then printf '%s\n' "${ALL_SERVICES[@]}"; return; fi
  for s in "$@"; do
    case $s in
      kafka|cassandra|postgres|registry) echo "$s" ;;
      pg|postgresql) echo postgres ;;
      schema-registry|apicurio) echo registry ;;
      *) die "unknown service '$s' (kafka, cassandra, postgres, registry)" ;;
    esac
  done
}

# Serialise up/down/reset between concurrent invocations.
take_lock() {
  mkdir -p "$STACK_DIR"
  exec 9>"$STACK_DIR/.lock"
  if ! flock -n 9; then
    info "waiting for another scripts/stack command (lock $STACK_DIR/.lock, up to 600 s)"
    flock -w 600 9 || die "another scripts/stack command still holds $STACK_DIR/.lock"
  fi
}

cmd_up() {
  local svc
  local -a svcs=() want; mapfile -t want < <(parse_services "$@")
  for svc in "${START_ORDER[@]}"; do
    printf '%s\n' "${want[@]}" | grep -qx "$svc" && svcs+=("$svc")
  done
  take_lock
  need_ss
  [[ $SECURE -eq 1 ]] || need_test_tools
  local t_all pid rc=0 todo=() results=$STACK_DIR/.up-results
  t_all=$(now)
  mkdir -p "$results"; rm -f "$results"/*

  # 1. Decide what needs starting; running+healthy services are skipped.
  for svc in "${svcs[@]}"; do
    mkdir -p "$STACK_DIR/$svc/logs"
    pid=$(svc_pid "$svc")
    if [[ -n $pid ]]; then
      [[ $svc == postgres || $svc == registry ]] || need_java
      # (secure Cassandra: only once its role bootstrap has completed)
      if [[ $SECURE -eq 1 && $svc == cassandra && ! -f $STACK_DIR/cassandra/data/auth-bootstrapped ]]; then
        todo+=("$svc:wait"); continue
      fi
      if probe "$svc" >/dev/null; then
        info "$svc: already running and healthy (pid $pid, port $(effective_port "$svc")) - skipping"
        if [[ $svc == kafka ]]; then
          local want_v=${KAFKA_VERSION:-} have; have=$(state_get kafka VERSION)
          if [[ ( -n $want_v && $want_v != "$have" ) || $KAFKA_MODE != "$(state_get kafka MODE)" ]]; then
            info "kafka: NOTE running $have ($(state_get kafka MODE)); 'scripts/stack down kafka' first to switch"
          fi
        fi
        continue
      fi
      todo+=("$svc:wait")       # running but not healthy yet (e.g. still starting)
    else
      todo+=("$svc:start")
    fi
  done
  [[ ${#todo[@]} -eq 0 ]] && { info "all requested services are up"; return 0; }

  # 2. Fail fast on port conflicts, before any download or start.
  local conflict=0 spec
  for item in "${todo[@]}"; do
    [[ ${item#*:} == start ]] || continue
    while read -r spec; do
      check_port "${spec%%|*}" "${spec#*|}" || conflict=1
    done < <(svc_ports "${item%%:*}")
  done
  [[ $conflict -eq 0 ]] || die "port conflict: nothing was started"

  # Secure mode: secrets and certificates before any service needs them.
  if [[ $SECURE -eq 1 ]]; then
    echo secure >"$STACK_DIR/.mode"
    need_java
    ensure_secrets
    ensure_tls
  fi

  # 3. Prerequisites and downloads (sequential: Maven's local repo is not
  #    safe for concurrent writers), then start each service in the background.
  local -a bg=()
  local ver probe_cls requested candidates
  for item in "${todo[@]}"; do
    svc=${item%%:*}
    case $svc in
      cassandra|kafka) need_java ;;
      registry) need_java; need_registry_java ;;   # Maven runs on 17, the registry on 21+
      postgres) need_postgres ;;
    esac
  done
  for item in "${todo[@]}"; do
    svc=${item%%:*}
    if [[ ${item#*:} == wait ]]; then
      info "$svc: running (pid $(svc_pid "$svc")) but not healthy yet: waiting"
      ( wait_healthy "$svc" "$(svc_pid "$svc")" "$(effective_port "$svc")" "$(now)" \
          && touch "$results/$svc.ok" ) &
      bg+=($!); continue
    fi
    # Stale pid files of dead processes are simply replaced.
    rm -f "$(pid_file "$svc")"
    ver=""
    case $svc in   # the JVM services: jars and their probe first
      cassandra) probe_cls=CqlProbe requested=$CASSANDRA_VERSION candidates=$CASSANDRA_DEFAULT_CANDIDATES ;;
      kafka) probe_cls=KafkaProbe requested=$KAFKA_VERSION candidates=$KAFKA_DEFAULT_CANDIDATES ;;
      registry) probe_cls=- requested=$REGISTRY_VERSION candidates=$REGISTRY_DEFAULT_CANDIDATES ;;   # probed with curl
      postgres) probe_cls="" ;;
    esac
    if [[ -n $probe_cls ]]; then
      ver=$(ensure_dist "$svc" "$requested" "$candidates") || { rc=1; continue; }
      [[ $probe_cls == - ]] || ensure_probe "$probe_cls" "$STACK_DIR/dist/$svc-$ver/lib" >/dev/null
    fi
    ( "start_$svc" "$ver" && touch "$results/$svc.ok" ) &   # (start_postgres ignores it)
    bg+=($!)
  done

  # 4. Wait for every background start and summarise.
  for pid in "${bg[@]}"; do wait "$pid" || true; done
  for item in "${todo[@]}"; do
    svc=${item%%:*}
    if [[ ! -f $results/$svc.ok ]]; then
      log "[stack] $svc: FAILED"; rc=1
    fi
  done
  rm -rf "$results"
  if [[ $rc -eq 0 ]]; then
    info "up: done in $(since "$t_all")s"
  else
    info "up: FAILED after $(since "$t_all")s"
  fi
  return "$rc"
}

cmd_down() {
  local -a svcs; mapfile -t svcs < <(parse_services "$@")
  take_lock
  local svc
  # Stop in reverse start order.
  for ((i = ${#svcs[@]} - 1; i >= 0; i--)); do
    svc=${svcs[i]}
    "stop_$svc"
  done
  # Stop can only be the end of a pg_ctl or JVM we started; report leftovers
  # (after a full down only: a partial one leaves the other services running).
  [[ $# -eq 0 ]] || return 0
  local left
  left=$(pgrep -af -- "$STACK_DIR/" | grep -vE "pgrep|scripts/stack" || true)
  [[ -n $left ]] && info "WARNING: processes still mention $STACK_DIR:"$'\n'"$left"
  return 0
}

cmd_status() {
  local svc pid port ver healthy running out rc=0 rows=() p2
  for svc in "${ALL_SERVICES[@]}"; do
    pid=$(svc_pid "$svc"); port=$(effective_port "$svc")
    ver=$(state_get "$svc" VERSION); healthy=no; running=no
    if [[ -n $pid ]]; then
      running=yes
      if [[ $(proc_state "$pid") == T ]]; then
        running=stopped   # SIGSTOPped
      elif out=$(probe "$svc"); then
        healthy=yes
        case $svc in
          cassandra|postgres|registry) ver=$(head -n1 <<<"$out") ;;
          kafka)
            ver="$ver ($(state_get kafka MODE)"
            if [[ $SECURE -eq 1 ]]; then ver+=",SASL_SSL)"; else ver+=")"; fi ;;
        esac
      fi
    fi
    [[ $healthy == yes ]] || rc=1
    rows+=("$svc|$running|${pid:--}|$port|${ver:--}|$healthy")
    if [[ $svc == kafka && $SECURE -eq 1 ]]; then
      # The probe above went through SASL_SSL + SCRAM-SHA-512; check the
      # SASL_PLAINTEXT listener too (SCRAM-SHA-256).
      p2=$(state_get kafka SASL_PLAINTEXT_PORT); p2=${p2:-$KAFKA_SASL_PLAINTEXT_PORT}
      out=no
      if [[ $running == yes ]] && run_probe KafkaProbe "$(dist_lib kafka)" \
           "127.0.0.1:$p2" "$(kafka_client_props SASL_PLAINTEXT SCRAM-SHA-256)" >/dev/null 2>&1; then
        out=yes
      fi
      [[ $out == yes ]] || rc=1
      rows+=("  sasl_plain|$running|${pid:--}|$p2|SCRAM-SHA-256|$out")
    fi
    if [[ $svc == kafka && $(state_get kafka MODE) == zookeeper ]]; then
      pid=$(svc_pid zookeeper)
      rows+=("  zookeeper|$([[ -n $pid ]] && echo yes || echo no)|${pid:--}|$(state_get kafka ZOOKEEPER_PORT)|-|$([[ -n $pid ]] && port_listening "$(state_get kafka ZOOKEEPER_PORT)" && echo yes || echo no)")
    fi
  done
  print_table '%-12s %-8s %-8s %-6s %-22s %s\n' "SERVICE|RUNNING|PID|PORT|VERSION|HEALTHY" "${rows[@]}"
  return "$rc"
}

cmd_reset() {
  cmd_down
  if [[ $SECURE -eq 1 ]]; then
    info "reset: deleting data, configs and logs (keeping $STACK_DIR/dist, tools, secrets and tls)"
  else
    info "reset: deleting data, configs and logs (keeping $STACK_DIR/dist and tools)"
  fi
  rm -rf "$STACK_DIR/kafka" "$STACK_DIR/cassandra" "$STACK_DIR/postgres" "$STACK_DIR/registry" "$(pg_run_dir)"
}

cmd_logs() {
  local n=100 svcs=() f
  while [[ $# -gt 0 ]]; do
    case $1 in
      -n) n=${2:?-n needs a number}; shift 2 ;;
      -n*) n=${1#-n}; shift ;;
      zookeeper|zk) svcs+=(zookeeper); shift ;;
      *) mapfile -t -O "${#svcs[@]}" svcs < <(parse_services "$1"); shift ;;
    esac
  done
  [[ ${#svcs[@]} -gt 0 ]] || svcs=("${ALL_SERVICES[@]}")
  for svc in "${svcs[@]}"; do
    f=$(log_file "$svc")
    [[ ${#svcs[@]} -gt 1 ]] && echo "==> $svc: $f <=="
    if [[ -f $f ]]; then tail -n "$n" "$f"; else echo "(no log yet)"; fi
  done
}

cmd_env() {
  if [[ $SECURE -eq 1 ]]; then
    # File paths only: secret values are never printed.
    local p2; p2=$(state_get kafka SASL_PLAINTEXT_PORT)
    [[ -n $(svc_pid kafka) && -n $p2 ]] || p2=$KAFKA_SASL_PLAINTEXT_PORT
    printf 'export %s=%q\n' \
      SECURE_KAFKA_BOOTSTRAP "127.0.0.1:$(effective_port kafka)" \
      SECURE_KAFKA_SASL_PLAINTEXT "127.0.0.1:$p2" \
      SECURE_KAFKA_USER "$SECURE_USER" \
      SECURE_KAFKA_PASSWORD_FILE "$(secret_file kafka_password)" \
      SECURE_CASSANDRA_CONTACT "127.0.0.1:$(effective_port cassandra)" \
      SECURE_CASSANDRA_USER "$SECURE_USER" \
      SECURE_CASSANDRA_PASSWORD_FILE "$(secret_file cassandra_password)" \
      SECURE_POSTGRES_URL "postgres://$SECURE_USER@127.0.0.1:$(effective_port postgres)/$PG_DB" \
      SECURE_POSTGRES_PASSWORD_FILE "$(secret_file postgres_password)" \
      SECURE_CA_FILE "$TLS_DIR/ca.pem" \
      SECURE_SCHEMA_REGISTRY_URL "http://127.0.0.1:$(effective_port registry)/apis/ccompat/v7"
    return
  fi
  echo "export KAFKA_BOOTSTRAP=127.0.0.1:$(effective_port kafka)"
  echo "export CASSANDRA_CONTACT=127.0.0.1:$(effective_port cassandra)"
  echo "export DATABASE_URL=postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$(effective_port postgres)/$PG_DB"
  # Not PIPELINE_*: the daemon would read that prefix as one of its config keys.
  echo "export SCHEMA_REGISTRY_URL=http://127.0.0.1:$(effective_port registry)/apis/ccompat/v7"
}

# Chaos helpers: signal the main process of a service.
cmd_signal() {
  local svc sig=$2 pid
  svc=$(parse_services "$1")
  pid=$(svc_pid "$svc")
  [[ -n $pid ]] || die "$svc is not running"
  info "$svc: kill -$sig $pid"
  kill "-$sig" "$pid"
}

cmd_restart() {
  [[ $# -ge 1 ]] || die "usage: scripts/stack restart <service>..."
  cmd_down "$@"
  exec 9>&-   # release the lock taken by down; up takes it again
  cmd_up "$@"
}
