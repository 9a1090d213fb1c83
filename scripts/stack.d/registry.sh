# shellcheck shell=bash
# scripts/stack.d/registry.sh: Apicurio Registry (Confluent-compatible API at
# /apis/ccompat/v7) from Maven Central: io.apicurio:apicurio-registry-app,
# classifier `all`, a Quarkus fast-jar tar.gz, unpacked once in
# dist/registry-<version>/app and run with `java -jar quarkus-run.jar` on a
# Java 21+ JDK (Java 17 fails with UnsupportedClassVersionError). Storage is the
# default in-memory H2: the registry's content lives as long as its process.
# Both its HTTP port and its management interface (health, metrics; Quarkus
# binds it to 0.0.0.0:9000 by default) are bound to 127.0.0.1.
# Secure mode: other ports, plain HTTP on loopback, no authentication (the
# daemon's basic auth is tested against a registry configured for it elsewhere).

registry_deps_xml() {
  # Only the archive: its pom's own dependencies are inside it already.
  printf '    <dependency><groupId>io.apicurio</groupId><artifactId>apicurio-registry-app</artifactId><version>%s</version><type>tar.gz</type><classifier>all</classifier><exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion></exclusions></dependency>\n' "$1"
}

# The Java 21+ JDK that runs the registry: STACK_REGISTRY_JAVA_HOME, else the
# newest JDK >= 21 under /usr/lib/jvm.
REGISTRY_JAVA_HOME=""
need_registry_java() {
  command -v curl >/dev/null || apt_install curl   # the registry's probe
  [[ -n $REGISTRY_JAVA_HOME ]] && return 0
  local c v best="" best_v=0
  local -a cands=()
  [[ -n ${STACK_REGISTRY_JAVA_HOME:-} ]] && cands+=("$STACK_REGISTRY_JAVA_HOME")
  for c in /usr/lib/jvm/*; do [[ -d $c ]] && cands+=("$c"); done
  for c in "${cands[@]}"; do
    [[ -x $c/bin/java ]] || continue
    v=$("$c/bin/java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
    [[ $v =~ ^[0-9]+$ ]] || continue
    if [[ -n ${STACK_REGISTRY_JAVA_HOME:-} && $c == "$STACK_REGISTRY_JAVA_HOME" && $v -ge 21 ]]; then
      best=$c; break
    fi
    if (( v >= 21 && v > best_v )); then best=$c best_v=$v; fi
  done
  [[ -n $best ]] || die "registry: Apicurio Registry needs a Java 21+ JDK (none under /usr/lib/jvm); install one (e.g. openjdk-21-jdk-headless or Temurin 25) or set STACK_REGISTRY_JAVA_HOME"
  REGISTRY_JAVA_HOME=$(realpath "$best")
}

# registry_unpack VERSION: the fast-jar tree in dist/registry-VERSION/app (once).
registry_unpack() {
  local d=$STACK_DIR/dist/registry-$1 tgz tmp
  [[ -f $d/app/.unpacked ]] && return 0
  tgz=$(find "$d/lib" -name 'apicurio-registry-app-*-all.tar.gz' | head -n1)
  [[ -n $tgz ]] || die "registry: no apicurio-registry-app tar.gz in $d/lib"
  tmp=$(mktemp -d "$d/.unpack.XXXXXX")
  tar xzf "$tgz" -C "$tmp" || { rm -rf "$tmp"; die "registry: could not unpack $tgz"; }
  [[ -f $tmp/quarkus-run.jar ]] || { rm -rf "$tmp"; die "registry: $tgz has no quarkus-run.jar"; }
  touch "$tmp/.unpacked"
  rm -rf "$d/app"; mv "$tmp" "$d/app"
}

start_registry() {
  local t0 ver=$1 pid logs=$STACK_DIR/registry/logs app
  t0=$(now)
  need_registry_java
  registry_unpack "$ver"
  app=$STACK_DIR/dist/registry-$ver/app
  mkdir -p "$logs" "$STACK_DIR/registry/work"
  write_state registry VERSION="$ver" PORT="$REGISTRY_PORT" MANAGEMENT_PORT="$REGISTRY_MANAGEMENT_PORT"
  local -a jvm
  # shellcheck disable=SC2206  # the heap setting is a list of JVM flags
  jvm=($REGISTRY_HEAP)
  jvm+=(-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.net.preferIPv4Stack=true
        "-Djava.io.tmpdir=$STACK_DIR/registry/work"
        -Dquarkus.http.host=127.0.0.1 "-Dquarkus.http.port=$REGISTRY_PORT"
        -Dquarkus.management.host=127.0.0.1 "-Dquarkus.management.port=$REGISTRY_MANAGEMENT_PORT"
        -Dapicurio.storage.kind=sql -Dapicurio.storage.sql.kind=h2
        -jar "$app/quarkus-run.jar")
  # The registry's JVM is not Java 17: launch_jvm takes its java from LAUNCH_JAVA.
  (cd "$STACK_DIR/registry/work" &&
   LAUNCH_JAVA=$REGISTRY_JAVA_HOME/bin/java launch_jvm "$(pid_file registry)" "$logs/registry.log" "${jvm[@]}")
  pid=$(cat "$(pid_file registry)")
  info "registry: started Apicurio $ver pid $pid (Java $("$REGISTRY_JAVA_HOME/bin/java" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)), waiting for its API (limit $(timeout_for registry)s)"
  wait_healthy registry "$pid" "$REGISTRY_PORT" "$t0" || return 1
  info "registry: RSS $(awk '/VmRSS/ { printf "%d MB", $2 / 1024 }' "/proc/$pid/status" 2>/dev/null)"
}

stop_registry() {
  stop_svc registry
  rm -f "$(pid_file registry)"
  wait_ports_free registry
}

# registry_probe PORT: the ccompat API answers (lists subjects) and the system
# info names the version.
registry_probe() {
  local port=$1 base info_json
  base=http://127.0.0.1:$port/apis
  curl -fsS --max-time 5 -o /dev/null "$base/ccompat/v7/subjects" 2>/dev/null || return 1
  info_json=$(curl -fsS --max-time 5 "$base/registry/v3/system/info" 2>/dev/null) || return 1
  sed -n 's/.*"version" *: *"\([^"]*\)".*/\1/p' <<<"$info_json"
}
