# shellcheck shell=bash
# scripts/stack.d/dist.sh: a server's jars, resolved with Maven (or borrowed
# from another stack dir) into STACK_DIR/dist/<name>-<version>/lib. Each
# service says what to resolve in <name>_deps_xml (kafka.sh, cassandra.sh).

DEP_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.6.1

# maven_fetch DEST_DIR POM_DEPENDENCIES_XML: copies the runtime closure into DEST_DIR/lib.
maven_fetch() {
  local dest=$1 deps=$2 work
  work=$(mktemp -d "$STACK_DIR/dist/.resolve.XXXXXX")
  render dist/pom.xml DEPENDENCIES="$deps" >"$work/pom.xml"
  if JAVA_HOME=$JAVA17_HOME mvn -B -q -f "$work/pom.xml" \
        -Dmaven.repo.local="$MAVEN_REPO_LOCAL" \
        "$DEP_PLUGIN:copy-dependencies" -DincludeScope=runtime \
        -DoutputDirectory="$work/lib" >"$work/mvn.log" 2>&1; then
    rm -rf "$dest"
    mkdir -p "$dest"
    mv "$work/lib" "$work/pom.xml" "$dest/"
    touch "$dest/.complete"
    rm -rf "$work"
    return 0
  fi
  # keep the log around for diagnosis, but as a failure
  mv "$work/mvn.log" "$STACK_DIR/dist/last-failed-mvn.log" 2>/dev/null || true
  rm -rf "$work"
  return 1
}

dep_xml() { printf '    <dependency><groupId>%s</groupId><artifactId>%s</artifactId><version>%s</version></dependency>\n' "$1" "$2" "$3"; }

# borrow_dist NAME VERSION: hard-links (else copies) a completed download from
# SHARED_DIST into our dist/; fails if there is none to borrow.
borrow_dist() {
  local src=$SHARED_DIST/$1-$2 dst=$STACK_DIR/dist/$1-$2 tmp
  [[ $SHARED_DIST != "$STACK_DIR/dist" && -f $src/.complete ]] || return 1
  tmp=$(mktemp -d "$STACK_DIR/dist/.borrow.XXXXXX")
  if cp -al "$src/." "$tmp/" 2>/dev/null || { rm -rf "$tmp"; mkdir -p "$tmp"; cp -a "$src/." "$tmp/"; }; then
    rm -rf "$dst"; mv "$tmp" "$dst"
    info "$1: $2 taken from $src"
    return 0
  fi
  rm -rf "$tmp"; return 1
}

# ensure_dist NAME REQUESTED_VERSION "CANDIDATES": echoes the version ready in dist/.
# An explicit version must resolve; otherwise the first candidate that resolves
# wins and is remembered in dist/NAME.default so later runs stay offline.
ensure_dist() {
  local name=$1 requested=$2 candidates=$3 v remembered t0
  mkdir -p "$STACK_DIR/dist"
  if [[ -n $requested ]]; then
    candidates=$requested
  else
    remembered=$(cat "$STACK_DIR/dist/$name.default" 2>/dev/null || true)
    if [[ -n $remembered && -f $STACK_DIR/dist/$name-$remembered/.complete ]]; then
      echo "$remembered"; return 0
    fi
  fi
  for v in $candidates; do
    if [[ -f $STACK_DIR/dist/$name-$v/.complete ]] || borrow_dist "$name" "$v"; then
      [[ -z $requested ]] && echo "$v" >"$STACK_DIR/dist/$name.default"
      echo "$v"; return 0
    fi
    need_maven
    t0=$(now)
    info "$name: resolving $v with Maven (repo: $MAVEN_REPO_LOCAL)"
    if maven_fetch "$STACK_DIR/dist/$name-$v" "$("${name}_deps_xml" "$v")"; then
      [[ -z $requested ]] && echo "$v" >"$STACK_DIR/dist/$name.default"
      info "$name: $v ready ($(find "$STACK_DIR/dist/$name-$v/lib" -type f | wc -l) files, $(since "$t0")s)"
      echo "$v"; return 0
    fi
    info "$name: $v did not resolve (see $STACK_DIR/dist/last-failed-mvn.log)"
  done
  die "$name: none of [$candidates] could be resolved from Maven"
}
