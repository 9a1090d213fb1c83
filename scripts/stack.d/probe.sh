# shellcheck shell=bash
# scripts/stack.d/probe.sh: health probes. Kafka and Cassandra are probed by
# tiny Java programs (scripts/lib/*.java) compiled once into STACK_DIR/tools;
# each service's own probe (<service>_probe) lives in its file.

PROBE_JVM_OPTS=(-Xshare:auto -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xmx96m -Djava.net.preferIPv4Stack=true)
# Logging configs that silence the client libraries inside the probes.
PROBE_QUIET_CONFIGS=(quiet-logback.xml quiet-log4j.properties quiet-log4j2.properties)

# ensure_probe CLASS LIBDIR: compiles scripts/lib/CLASS.java against LIBDIR/*,
# echoes the class directory (cached by source checksum and lib dir).
ensure_probe() {
  local cls=$1 lib=$2 src sum dir q
  src=$LIB_DIR/$cls.java
  sum=$(cat "$src" <(echo "$lib") | sha1sum | cut -c1-12)
  dir=$STACK_DIR/tools/$cls-$sum
  if [[ ! -f $dir/$cls.class ]]; then
    # Compile aside and rename: a concurrent invocation never sees half a class.
    local tmp; mkdir -p "$STACK_DIR/tools"; tmp=$(mktemp -d "$dir.tmp.XXXXXX")
    "$JAVA17_HOME/bin/javac" -nowarn -cp "$lib/*" -d "$tmp" "$src" >&2 ||
      { rm -rf "$tmp"; die "could not compile $src"; }
    [[ -d $dir && ! -f $dir/$cls.class ]] && rm -rf "$dir"
    chmod 755 "$tmp"
    mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"
  fi
  for q in "${PROBE_QUIET_CONFIGS[@]}"; do
    [[ -f $STACK_DIR/tools/$q ]] || render "tools/$q" >"$STACK_DIR/tools/$q"
  done
  echo "$dir"
}

run_probe() {
  local cls=$1 lib=$2; shift 2
  local dir; dir=$(ensure_probe "$cls" "$lib")
  timeout 20 "$JAVA17_HOME/bin/java" "${PROBE_JVM_OPTS[@]}" \
    -Dlogback.configurationFile="$STACK_DIR/tools/quiet-logback.xml" \
    -Dlog4j.configuration="file:$STACK_DIR/tools/quiet-log4j.properties" \
    -Dlog4j2.configurationFile="$STACK_DIR/tools/quiet-log4j2.properties" \
    -cp "$dir:$lib/*" "$cls" "$@"
}

# dist_lib SERVICE: the jar directory of the version the service was started with.
dist_lib() { echo "$STACK_DIR/dist/$1-$(state_get "$1" VERSION)/lib"; }

# probe SERVICE: prints a one-line summary (version or metadata) and returns
# 0 only if the service answers a real request (cassandra_probe, kafka_probe,
# postgres_probe PORT).
probe() {
  local svc=$1 port pid
  port=$(effective_port "$svc")
  # A SIGSTOPped process cannot answer: don't wait for the probe's timeouts.
  pid=$(svc_pid "$svc")
  [[ -n $pid && $(proc_state "$pid") == T ]] && return 1
  "${svc}_probe" "$port"
}
