# shellcheck shell=bash
# scripts/stack.d/prereqs.sh: what the stack needs on the machine (Java 17,
# Maven, PostgreSQL, iproute2's ss, the status page tests' chromium and tmux),
# installed with apt-get when we are root and it is missing.

APT_UPDATED=0
apt_install() {
  if ! is_root || ! command -v apt-get >/dev/null; then
    die "missing packages: $*. Fix: sudo apt-get update && sudo apt-get install -y $*"
  fi
  if [[ $APT_UPDATED -eq 0 ]]; then
    info "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    APT_UPDATED=1
  fi
  info "apt-get install -y $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

need_ss() {
  command -v ss >/dev/null || apt_install iproute2
}

# Tools of tests/it/status.rs: a headless browser for the status page (Debian's chromium) and
# tmux for `pipeline top`. Installed like the services' packages; when that is impossible
# (not root, no apt) only a warning: those tests then say that they skip.
need_test_tools() {
  local missing=()
  command -v chromium >/dev/null || missing+=(chromium)
  command -v tmux >/dev/null || missing+=(tmux)
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if is_root && command -v apt-get >/dev/null; then
    apt_install "${missing[@]}" || info "warning: could not install ${missing[*]}: the status page tests will skip"
  else
    info "warning: missing ${missing[*]} (sudo apt-get install -y ${missing[*]}): the status page tests will skip"
  fi
}

# Java 17 home: Cassandra 5.0 supports Java 11/17 only (a newer default JDK
# breaks it), so every JVM of the stack runs on 17 explicitly.
JAVA17_HOME=""
find_java17() {
  local c cands=()
  [[ -n ${STACK_JAVA_HOME:-} ]] && cands+=("$STACK_JAVA_HOME")
  cands+=("/usr/lib/jvm/java-17-openjdk-$(dpkg --print-architecture 2>/dev/null || echo amd64)")
  for c in /usr/lib/jvm/*17*; do [[ -d $c ]] && cands+=("$c"); done
  if command -v update-alternatives >/dev/null; then
    while read -r c; do cands+=("${c%/bin/java}"); done \
      < <(update-alternatives --list java 2>/dev/null | grep -- '17' || true)
  fi
  for c in "${cands[@]}"; do
    if [[ -x $c/bin/java && -x $c/bin/javac ]] &&
       "$c/bin/java" -version 2>&1 | grep -qE 'version "17[."]'; then
      JAVA17_HOME=$(realpath "$c"); return 0
    fi
  done
  return 1
}

need_java() {
  [[ -n $JAVA17_HOME ]] && return 0
  find_java17 && return 0
  apt_install openjdk-17-jdk-headless
  find_java17 || die "Java 17 JDK not found after install (set STACK_JAVA_HOME)"
}

need_maven() {
  command -v mvn >/dev/null || apt_install maven
}

PG_BIN=""
find_pg_bin() {
  local d best=""
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x $d/postgres && -x $d/initdb && -x $d/pg_ctl ]] || continue
    best=$d   # glob is sorted; keep the highest major (numeric dirs, 15 < 16 < 17)
  done
  [[ -n $best ]] && PG_BIN=$best
}

need_postgres() {
  [[ -n $PG_BIN ]] && return 0
  find_pg_bin && return 0
  apt_install postgresql
  find_pg_bin || die "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin"
  # Debian's package creates and may start a default cluster on 5432: stop it,
  # the stack runs its own cluster under STACK_DIR.
  if command -v pg_lsclusters >/dev/null; then
    pg_lsclusters -h 2>/dev/null | awk '$4 == "online" { print $1, $2 }' |
      while read -r v c; do
        info "stopping Debian default cluster $v/$c that the install started"
        pg_ctlcluster "$v" "$c" stop || true
      done
  fi
}
