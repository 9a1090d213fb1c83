# shellcheck shell=bash
# scripts/stack.d/postgres.sh: PostgreSQL from the Debian packages, our own
# cluster under STACK_DIR/postgres; in secure mode TLS-only TCP with SCRAM.
# Configs: templates/postgres/ (pg_hba.conf, stack.conf included from
# postgresql.conf, and the SQL that creates the app role and database).

pg_data() { echo "$STACK_DIR/postgres/data"; }
pg_run_dir() {
  # Unix socket paths are limited to 107 bytes: fall back to /tmp if too long.
  local d=$STACK_DIR/postgres/run
  if (( ${#d} + 20 > 107 )); then
    d=/tmp/stack-pg-$(echo "$STACK_DIR" | sha1sum | cut -c1-10)
  fi
  echo "$d"
}

# Database superuser: initdb's -U; the admin connects over the unix socket with
# peer auth, so it must match the OS user running psql (postgres when we are root).
pg_superuser() { if is_root; then echo postgres; else id -un; fi; }

# Run a command as the postgres OS user when we are root (initdb refuses root).
as_pg() {
  if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The postgres user must be able to traverse every parent of the data dir.
pg_make_traversable() {
  is_root || return 0
  local d=$1
  while [[ $d != / ]]; do
    if ! runuser -u postgres -- test -x "$d" 2>/dev/null; then
      info "postgres: chmod o+x $d (the postgres user must traverse it)"
      chmod o+x "$d"
    fi
    d=$(dirname "$d")
  done
}

# After a crash (e.g. `kill9 postgres`) the old postmaster may linger as a zombie
# (postgres then still sees its pid as alive) and orphaned backends may still
# be exiting. Wait until no live process works in the data dir, then remove a
# postmaster.pid whose process is gone or a zombie.
pg_clear_stale_lock() {
  local data=$1 old p i busy=1
  [[ -z $(svc_pid postgres) ]] || return 0
  for ((i = 0; i < 100; i++)); do
    busy=0
    for p in /proc/[0-9]*; do
      [[ $(readlink "$p/cwd" 2>/dev/null) == "$data" ]] || continue
      [[ $(proc_state "${p#/proc/}") == Z ]] || { busy=1; break; }
    done
    [[ $busy -eq 0 ]] && break
    sleep 0.1
  done
  if [[ $busy -ne 0 ]]; then
    error "postgres: process ${p#/proc/} still uses $data but is not our postmaster"
    return 1
  fi
  local f
  for f in "$data/postmaster.pid" "$(pg_run_dir)/.s.PGSQL.$POSTGRES_PORT.lock"; do
    [[ -f $f ]] || continue
    old=$(head -n1 "$f" 2>/dev/null || true)
    if [[ ! -d /proc/$old || $(proc_state "$old") == Z ]]; then
      info "postgres: removing stale $(basename "$f") (pid $old is gone)"
      rm -f "$f"
    fi
  done
}

pg_sql() { # psql as superuser over the unix socket, SQL on stdin
  as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$(pg_run_dir)" -p "$POSTGRES_PORT" -U "$(pg_superuser)" -d postgres
}

start_postgres() {
  local t0 data run logs pid
  t0=$(now)
  data=$(pg_data); run=$(pg_run_dir); logs=$STACK_DIR/postgres/logs
  mkdir -p "$data" "$run" "$logs"
  if is_root; then
    id postgres >/dev/null 2>&1 || die "OS user 'postgres' missing (apt-get install postgresql creates it)"
    chown postgres:postgres "$data" "$run" "$logs"
    chown -R postgres:postgres "$STACK_DIR/postgres"
    pg_make_traversable "$STACK_DIR/postgres"
  fi
  chmod 700 "$data"

  if [[ ! -f $data/PG_VERSION ]]; then
    info "postgres: initdb ($PG_BIN)"
    as_pg "$PG_BIN/initdb" -D "$data" -U "$(pg_superuser)" --auth-local=peer --auth-host=scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >"$logs/initdb.log" 2>&1 ||
      { cat "$logs/initdb.log" >&2; return 1; }
    echo "include_if_exists = 'stack.conf'" >>"$data/postgresql.conf"
    # Only loopback TCP, password (SCRAM) auth; local socket by peer for admin.
    render postgres/pg_hba.conf >"$data/pg_hba.conf"
    chown postgres:postgres "$data/pg_hba.conf" "$data/postgresql.conf" 2>/dev/null || true
  fi
  if [[ $SECURE -eq 1 ]]; then
    # TCP only over TLS with SCRAM; admin by peer auth over the unix socket.
    render postgres/pg_hba-secure.conf >"$data/pg_hba.conf"
    # The server key must belong to the postgres user, mode 600.
    local pgtls=$STACK_DIR/postgres/tls
    mkdir -p "$pgtls"
    cp "$TLS_DIR/server.pem" "$pgtls/server.pem"
    (umask 077; cp "$TLS_DIR/server.key" "$pgtls/server.key")
    chmod 700 "$pgtls"; chmod 644 "$pgtls/server.pem"; chmod 600 "$pgtls/server.key"
    if is_root; then chown -R postgres:postgres "$pgtls" "$data/pg_hba.conf"; fi
  fi
  # Settings regenerated at every start (port may change).
  {
    render postgres/stack.conf POSTGRES_PORT="$POSTGRES_PORT" RUN_DIR="$run"
    [[ $SECURE -ne 1 ]] || render postgres/stack-ssl.conf STACK_DIR="$STACK_DIR"
  } >"$data/stack.conf"
  is_root && chown postgres:postgres "$data/stack.conf"
  write_state postgres VERSION="$(basename "$(dirname "$PG_BIN")")" PORT="$POSTGRES_PORT"

  pg_clear_stale_lock "$data" || return 1
  as_pg "$PG_BIN/pg_ctl" start -D "$data" -l "$(log_file postgres)" -w -t "$(timeout_for postgres)" \
    </dev/null >>"$logs/pg_ctl.log" 2>&1 9>&- || { print_log_tail postgres; return 1; }
  pid=$(svc_pid postgres)
  info "postgres: started $(state_get postgres VERSION) pid $pid"

  # Idempotent bootstrap of the app role and database.
  if [[ $SECURE -eq 1 ]]; then
    # The password travels on psql's stdin only; failing statements are not
    # logged by the server (log_min_error_statement), so it never reaches a log.
    { printf '\\set pw %s\n' "$(secret postgres_password)"
      render postgres/bootstrap-secure.sql USER="$SECURE_USER" DB="$PG_DB"
    } | pg_sql >/dev/null 2>"$logs/bootstrap.err" ||
      { cat "$logs/bootstrap.err" >&2; print_log_tail postgres; return 1; }
  else
    render postgres/bootstrap.sql USER="$PG_USER" PASSWORD="$PG_PASSWORD" DB="$PG_DB" |
      pg_sql >/dev/null || { print_log_tail postgres; return 1; }
  fi
  wait_healthy postgres "$pid" "$POSTGRES_PORT" "$t0"
}

stop_postgres() {
  local data; data=$(pg_data)
  [[ -n $(svc_pid postgres) ]] || return 0
  find_pg_bin || return 0
  info "postgres: pg_ctl stop -m fast"
  as_pg "$PG_BIN/pg_ctl" stop -D "$data" -m fast -w -t 60 >&2 || {
    local pid; pid=$(svc_pid postgres)
    [[ -n $pid ]] && stop_pid postgres "$pid"
  }
}

# pg_select_version URL: the server's version as the client at URL sees it.
pg_select_version() {
  # shellcheck disable=SC2016  # $$ quotes SQL, not the shell
  PGCONNECT_TIMEOUT=3 "$PG_BIN/psql" -X -qtA "$1" -c 'select split_part(version(), $$ $$, 2)' 2>/dev/null
}

postgres_probe() {
  local port=$1
  find_pg_bin || return 1
  if [[ $SECURE -eq 1 ]]; then
    # TLS with full verification (CA + host name), SCRAM password from the file.
    PGPASSWORD=$(secret postgres_password) pg_select_version \
      "postgresql://$SECURE_USER@127.0.0.1:$port/$PG_DB?sslmode=verify-full&sslrootcert=$TLS_DIR/ca.pem"
  else
    pg_select_version "postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$port/$PG_DB"
  fi
}
