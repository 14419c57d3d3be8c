#!/usr/bin/env bash
# The Java libraries a custodian bank writes fundwatch's records with (Apache Avro, avro-tools,
# kafka-clients; versions in ops/java/pom.xml), resolved by Maven into ~/.m2 the same way
# ops/kafka.sh resolves the broker: the first use needs the network, later ones run offline.
#
#   ops/java.sh classpath    print the classpath of avro + kafka-clients (avro-tools left out)
#   ops/java.sh avro-tools   print the path of the avro-tools jar (a fat jar: run it with java -jar)
#
# The classpath is cached per pom content in $FUNDWATCH_JAVA_DIR (default .java/ at the repository root).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
state=${FUNDWATCH_JAVA_DIR:-$root/.java}
pom=$here/java/pom.xml

log() { printf 'java: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

resolved() {
  local key cp_file
  mkdir -p "$state"
  key=$(sha256sum "$pom" | cut -c1-16)
  cp_file=$state/classpath-$key.txt
  if [[ -s $cp_file ]] && tr ':' '\n' <"$cp_file" | while read -r j; do [[ -f $j ]] || exit 1; done; then
    cat "$cp_file"; return
  fi
  command -v mvn >/dev/null || die "mvn not found: install Maven (and Java 17) to fetch avro-tools and kafka-clients"
  command -v java >/dev/null || die "java not found: Java 17+ is needed"
  log "resolving avro, avro-tools and kafka-clients with Maven (first use only)"
  if ! mvn -B -q -o -f "$pom" dependency:build-classpath -Dmdep.outputFile="$cp_file" >"$state/mvn.log" 2>&1; then
    mvn -B -q -f "$pom" dependency:build-classpath -Dmdep.outputFile="$cp_file" >"$state/mvn.log" 2>&1 \
      || { cat "$state/mvn.log" >&2; rm -f "$cp_file"; die "Maven could not resolve ops/java/pom.xml (see above)"; }
  fi
  cat "$cp_file"
}

case "${1:-}" in
  classpath) resolved | tr ':' '\n' | grep -v '/avro-tools-' | paste -sd: ;;
  avro-tools) resolved | tr ':' '\n' | grep '/avro-tools-' | head -1 | grep . || die "avro-tools not on the classpath" ;;
  *) echo "usage: $0 classpath|avro-tools" >&2; exit 2 ;;
esac
