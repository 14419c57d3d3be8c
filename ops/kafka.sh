#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft, broker+controller in one JVM) on 127.0.0.1 for the demo and
# the tests. The broker's jars come from Maven Central through ops/kafka/pom.xml and stay in the
# local Maven repository (~/.m2), so only the first start needs the network.
#
#   ops/kafka.sh start      resolve jars, format storage once, start, wait for metadata; prints HOST:PORT
#   ops/kafka.sh stop       controlled shutdown (TERM, then KILL after KAFKA_STOP_TIMEOUT seconds)
#   ops/kafka.sh status     exit 0 and print HOST:PORT while the broker answers
#   ops/kafka.sh bootstrap  print HOST:PORT of the running broker
#   ops/kafka.sh reset      stop and delete all broker data
#
# State lives in $FUNDWATCH_KAFKA_DIR (default: .kafka/ at the repository root, git-ignored).
# KAFKA_PORT / KAFKA_CONTROLLER_PORT pin the ports; by default free ones are picked at first start
# and kept. Starting twice is harmless: the second call sees the running broker and returns.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=ops/lib.sh
source "$here/lib.sh"
root=$(cd "$here/.." && pwd)
state=${FUNDWATCH_KAFKA_DIR:-$root/.kafka}
pom=$here/kafka/pom.xml
heap=${KAFKA_HEAP:--Xms256m -Xmx768m}
start_timeout=${KAFKA_START_TIMEOUT:-90}
stop_timeout=${KAFKA_STOP_TIMEOUT:-30}
host=127.0.0.1

log() { printf 'kafka: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

pid_alive() { [[ -f $state/broker.pid ]] && kill -0 "$(cat "$state/broker.pid")" 2>/dev/null; }
bootstrap() { [[ -f $state/port ]] && printf '%s:%s\n' "$host" "$(cat "$state/port")"; }
answers() { local b; b=$(bootstrap) || return 1; python3 "$here/kafka_probe.py" "$b" >/dev/null 2>&1; }


classpath() {
  # Cached per pom content; Maven is asked offline first so a warm ~/.m2 needs no network.
  local key cp_file
  key=$(sha256sum "$pom" | cut -c1-16)
  cp_file=$state/classpath-$key.txt
  if [[ -s $cp_file ]] && tr ':' '\n' <"$cp_file" | while read -r j; do [[ -f $j ]] || exit 1; done; then
    cat "$cp_file"; return
  fi
  command -v mvn >/dev/null || die "mvn not found: install Maven (and Java 17) to fetch the broker"
  command -v java >/dev/null || die "java not found: the broker needs Java 17+"
  log "resolving Kafka jars with Maven (first start only)"
  if ! mvn -B -q -o -f "$pom" dependency:build-classpath -Dmdep.outputFile="$cp_file" >"$state/mvn.log" 2>&1; then
    mvn -B -q -f "$pom" dependency:build-classpath -Dmdep.outputFile="$cp_file" >"$state/mvn.log" 2>&1 \
      || { cat "$state/mvn.log" >&2; die "Maven could not resolve the Kafka broker (see above)"; }
  fi
  cat "$cp_file"
}

write_config() {
  local port=$1 cport=$2
  cat >"$state/server.properties" <<PROPS
# written by ops/kafka.sh; edit the script, not this file
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$host:$cport
listeners=PLAINTEXT://$host:$port,CONTROLLER://$host:$cport
advertised.listeners=PLAINTEXT://$host:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$state/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=-1
log.segment.bytes=67108864
log.cleaner.backoff.ms=1000
PROPS
  cat >"$state/log4j2.properties" <<'PROPS'
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = out
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
logger.broker.name = kafka.server.BrokerServer
logger.broker.level = INFO
PROPS
}

start() {
  mkdir -p "$state"
  exec 9>"$state/lock"
  flock 9
  if pid_alive && answers; then
    log "already running (pid $(cat "$state/broker.pid"))"; bootstrap; return 0
  fi
  if pid_alive; then
    log "a broker process exists but does not answer yet; waiting"
  else
    local cp port cport
    cp=$(classpath)
    port=${KAFKA_PORT:-$(cat "$state/port" 2>/dev/null || true)}
    cport=${KAFKA_CONTROLLER_PORT:-$(cat "$state/controller_port" 2>/dev/null || true)}
    { [[ -n $port ]] && port_free "$port"; } || port=$(free_port)
    { [[ -n $cport ]] && [[ $cport != "$port" ]] && port_free "$cport"; } || cport=$(free_port)
    if [[ -f $state/controller_port && $(cat "$state/controller_port") != "$cport" ]]; then
      log "controller port changed; the single-node metadata log is re-formatted"
      rm -rf "$state/data"
    fi
    echo "$port" >"$state/port"; echo "$cport" >"$state/controller_port"
    write_config "$port" "$cport"
    if [[ ! -f $state/data/meta.properties ]]; then
      rm -rf "$state/data"
      local cluster_id
      cluster_id=$(python3 "$here/cluster_id.py")
      java -cp "$cp" -Dlog4j2.configurationFile="$state/log4j2.properties" kafka.tools.StorageTool \
        format -t "$cluster_id" -c "$state/server.properties" >"$state/format.log" 2>&1 \
        || { cat "$state/format.log" >&2; die "storage format failed"; }
    fi
    log "starting Kafka $(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom") on $host:$port"
    # setsid: the broker outlives this shell and the make recipe that called it.
    setsid java $heap -XX:+UseG1GC -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$state/log4j2.properties" \
      -cp "$cp" kafka.Kafka "$state/server.properties" >>"$state/broker.log" 2>&1 </dev/null 9>&- &
    echo $! >"$state/broker.pid"
  fi
  local waited=0
  until answers; do
    pid_alive || { tail -n 40 "$state/broker.log" >&2; die "broker exited during start"; }
    (( waited >= start_timeout * 4 )) && { tail -n 40 "$state/broker.log" >&2; die "no metadata answer after ${start_timeout}s"; }
    sleep 0.25; waited=$((waited + 1))
  done
  log "ready after $(awk "BEGIN{print $waited/4}")s (pid $(cat "$state/broker.pid"))"
  bootstrap
}

stop() {
  [[ -d $state ]] || return 0
  if ! pid_alive; then rm -f "$state/broker.pid"; log "not running"; return 0; fi
  local pid waited=0
  pid=$(cat "$state/broker.pid")
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do
    if (( waited >= stop_timeout * 4 )); then log "no clean exit after ${stop_timeout}s; killing"; kill -KILL "$pid" 2>/dev/null || true; break; fi
    sleep 0.25; waited=$((waited + 1))
  done
  rm -f "$state/broker.pid"
  log "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if pid_alive && answers; then bootstrap; else log "not running"; exit 1; fi ;;
  bootstrap) pid_alive && bootstrap || { log "not running"; exit 1; } ;;
  reset) stop; rm -rf "$state"; log "data removed" ;;
  *) echo "usage: $0 start|stop|status|bootstrap|reset" >&2; exit 2 ;;
esac
