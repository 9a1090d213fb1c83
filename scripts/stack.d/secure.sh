# shellcheck shell=bash
# scripts/stack.d/secure.sh: the secure stack's secrets and TLS material
# (generated once, kept across reset), and the marker that keeps a secure and
# a default stack from sharing a directory.

# Secret values only ever go into mode-600 files (secrets/, generated configs)
# and process stdin; never into argv, script output or logs.
SECRET_NAMES=(kafka_password kafka_admin_password cassandra_password
              cassandra_admin_password postgres_password keystore_password)

secret_file() { echo "$SECRETS_DIR/$1"; }
secret() { tr -d '\n' <"$(secret_file "$1")"; }   # value, for config files only

ensure_secrets() {
  local n f
  (umask 077; mkdir -p "$SECRETS_DIR")
  chmod 700 "$SECRETS_DIR"
  command -v openssl >/dev/null || apt_install openssl
  for n in "${SECRET_NAMES[@]}"; do
    f=$(secret_file "$n")
    if [[ ! -s $f ]]; then
      (umask 077; openssl rand -hex 16 >"$f.tmp" && mv "$f.tmp" "$f")
      info "secrets: generated $f"
    fi
    chmod 600 "$f"
  done
}

# ensure_tls: a local CA and a server certificate for localhost / 127.0.0.1,
# plus keystores for the JVMs (PKCS12 and JKS, password secrets/keystore_password):
#   ca.pem ca.key server.pem server.key server-chain.pem
#   server.p12 server.jks (key + chain)   truststore.p12 truststore.jks (CA)
# The server certificate is re-issued when missing, not signed by ca.pem or
# expiring within 30 days; keystores are rebuilt when older than their inputs.
ensure_tls() {
  local d=$TLS_DIR kpw; kpw=$(secret_file keystore_password)
  mkdir -p "$d"; chmod 755 "$d"
  if [[ ! -s $d/ca.pem || ! -s $d/ca.key ]]; then
    info "tls: generating local CA $d/ca.pem"
    (umask 077; openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
        -keyout "$d/ca.key" -out "$d/ca.pem" -subj "/CN=scripts-stack local CA $(hostname -s)" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        -addext subjectKeyIdentifier=hash 2>/dev/null) || die "tls: CA generation failed"
    chmod 644 "$d/ca.pem"
    rm -f "$d/server.pem"
  fi
  if [[ ! -s $d/server.pem || ! -s $d/server.key ]] ||
     ! openssl verify -CAfile "$d/ca.pem" "$d/server.pem" >/dev/null 2>&1 ||
     ! openssl x509 -in "$d/server.pem" -noout -checkend $((30 * 86400)) >/dev/null 2>&1; then
    info "tls: issuing server certificate $d/server.pem (SAN DNS:localhost, IP:127.0.0.1)"
    local ext; ext=$(mktemp)
    render tls/server-ext.cnf >"$ext"
    (umask 077
     openssl req -new -newkey rsa:2048 -nodes -sha256 -keyout "$d/server.key" \
       -out "$d/server.csr" -subj "/CN=localhost" 2>/dev/null &&
     openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
       -CAcreateserial -days 825 -sha256 -extfile "$ext" -out "$d/server.pem" 2>/dev/null) ||
      { rm -f "$ext"; die "tls: server certificate generation failed"; }
    rm -f "$ext" "$d/server.csr" "$d/server.p12" "$d/server.jks"
    chmod 644 "$d/server.pem"; chmod 600 "$d/server.key"
  fi
  cat "$d/server.pem" "$d/ca.pem" >"$d/server-chain.pem"
  local kt=$JAVA17_HOME/bin/keytool
  if [[ ! -s $d/server.p12 || $d/server.p12 -ot $d/server.pem || $d/server.p12 -ot $kpw ]]; then
    rm -f "$d/server.p12" "$d/server.jks"
    (umask 077; openssl pkcs12 -export -name server -in "$d/server.pem" -inkey "$d/server.key" \
       -certfile "$d/ca.pem" -passout "file:$kpw" -out "$d/server.p12") ||
      die "tls: could not write server.p12"
  fi
  if [[ ! -s $d/server.jks || $d/server.jks -ot $d/server.p12 ]]; then
    rm -f "$d/server.jks"
    (umask 077; "$kt" -importkeystore -noprompt -srckeystore "$d/server.p12" -srcstoretype PKCS12 \
       -srcstorepass:file "$kpw" -destkeystore "$d/server.jks" -deststoretype JKS \
       -deststorepass:file "$kpw" -destkeypass:file "$kpw" >/dev/null 2>&1) ||
      die "tls: could not write server.jks"
  fi
  local t ts
  for t in p12:PKCS12 jks:JKS; do
    ts=$d/truststore.${t%%:*}
    if [[ ! -s $ts || $ts -ot $d/ca.pem || $ts -ot $kpw ]]; then
      rm -f "$ts"
      "$kt" -importcert -noprompt -alias stack-ca -file "$d/ca.pem" -keystore "$ts" \
        -storetype "${t#*:}" -storepass:file "$kpw" >/dev/null 2>&1 ||
        die "tls: could not write truststore.${t%%:*}"
      chmod 644 "$ts"
    fi
  done
}

# A secure and a default stack must never share a directory.
check_stack_mode() {
  local m; m=$(cat "$STACK_DIR/.mode" 2>/dev/null || true)
  if [[ $SECURE -eq 1 ]]; then
    [[ -z $m || $m == secure ]] ||
      die "$STACK_DIR holds a '$m' stack, not a secure one (unset STACK_DIR or choose another for --secure)"
    if [[ -z $m ]] && [[ -d $STACK_DIR/kafka || -d $STACK_DIR/cassandra || -d $STACK_DIR/postgres ]]; then
      die "$STACK_DIR holds a non-secure stack (no .mode file): unset STACK_DIR or choose another for --secure"
    fi
  elif [[ $m == secure ]]; then
    die "$STACK_DIR holds a secure stack: add --secure (or STACK_SECURE=1)"
  fi
}
