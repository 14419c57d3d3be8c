#!/usr/bin/env bash
# A project-managed PostgreSQL server on 127.0.0.1 for the shared store (FUNDWATCH_DB_DSN), the demo
# and the tests. Debian's `postgresql` package provides the binaries (installed with apt-get when
# they are missing and this runs as root); the cluster is the project's own, not the package's.
#
#   ops/postgres.sh start    install if needed, initdb once, start, wait until it answers; prints the DSN
#   ops/postgres.sh stop     fast shutdown (clients disconnected, then a clean checkpoint)
#   ops/postgres.sh status   exit 0 and print the DSN while the server answers
#   ops/postgres.sh dsn      print the DSN of the running server
#   ops/postgres.sh reset    stop and delete all data
#
# State lives in $FUNDWATCH_PG_DIR (default: var/postgres/ at the repository root, git-ignored). The
# server listens on 127.0.0.1 only, on PG_PORT or a free port picked at first start and kept; the
# superuser `fundwatch` has a random password (state dir, mode 600) that the DSN carries. PostgreSQL
# refuses to run as root: as root the server runs as the `postgres` system user, which owns the
# state. Starting twice is harmless: the second call sees the running server and prints its DSN.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=ops/lib.sh
source "$here/lib.sh"
root=$(cd "$here/.." && pwd)
state=${FUNDWATCH_PG_DIR:-$root/var/postgres}
host=127.0.0.1
user=fundwatch
db=fundwatch
start_timeout=${PG_START_TIMEOUT:-60}
stop_timeout=${PG_STOP_TIMEOUT:-30}
run_as=${PG_RUN_AS:-postgres}  # only used as root

log() { printf 'postgres: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Runs a command as the user that owns the cluster (the server will not run as root).
as_owner() { if (( EUID == 0 )); then runuser -u "$run_as" -- "$@"; else "$@"; fi; }

bin_dir() {
  # Debian keeps each major version's server binaries under /usr/lib/postgresql/N/bin, off PATH
  # (a pg_ctl on PATH may be another installation's wrapper or link); PG_BIN picks one explicitly.
  if [[ -n ${PG_BIN:-} ]]; then [[ -x $PG_BIN/initdb ]] && { echo "$PG_BIN"; return 0; }; die "no initdb in PG_BIN=$PG_BIN"; fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [[ -n $d && -x $d/initdb && -x $d/pg_ctl ]] && { echo "$d"; return 0; }
  return 1
}

ensure_installed() {
  bin=$(bin_dir) && return 0
  if (( EUID == 0 )) && command -v apt-get >/dev/null; then
    log "installing Debian's postgresql package (first start only)"
    export DEBIAN_FRONTEND=noninteractive
    mkdir -p "$state"
    { apt-get install -y -q postgresql || { apt-get update -q && apt-get install -y -q postgresql; }; } \
      >"$state/apt.log" 2>&1 || { tail -n 30 "$state/apt.log" >&2; die "apt-get install postgresql failed"; }
    bin=$(bin_dir) || die "postgresql installed but no /usr/lib/postgresql/*/bin/initdb"
  else
    die "PostgreSQL server binaries not found: install Debian's package (sudo apt-get install postgresql) or set PG_BIN"
  fi
}

# The data directory: under $state when the cluster's owner can reach it; a repository under a
# private home directory (mode 700) is not reachable by `postgres`, so the data then lives in a
# directory of its own under /var/tmp, named after this repository, and $state/pgdata says where.
data_dir() {
  if [[ -f $state/pgdata ]]; then cat "$state/pgdata"; return; fi
  local d=$state/data
  if (( EUID == 0 )) && ! runuser -u "$run_as" -- test -w "$state"; then
    d=/var/tmp/fundwatch-pg-$(printf '%s' "$state" | sha256sum | cut -c1-12)/data
    log "$run_as cannot reach $state; the data lives in $d"
  fi
  echo "$d" >"$state/pgdata"
  echo "$d"
}

port() { cat "$state/port" 2>/dev/null; }
password() { cat "$state/password"; }
dsn() { printf 'postgresql://%s:%s@%s:%s/%s\n' "$user" "$(password)" "$host" "$(port)" "$db"; }
running() { [[ -n ${data:-} && -f $data/postmaster.pid ]] && as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; }
answers() { [[ -n $(port) ]] && "$bin/pg_isready" -q -h "$host" -p "$(port)" -d postgres -U "$user" >/dev/null 2>&1; }


prepare_state() {
  mkdir -p "$state"
  chmod 700 "$state"
  if (( EUID == 0 )); then
    id -u "$run_as" >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$run_as" || die "cannot create the system user $run_as"
    chown "$run_as:" "$state"
  fi
}

initialise() {
  [[ -f $data/PG_VERSION ]] && return 0
  log "initdb into $data (first start only)"
  local parent pwfile
  parent=$(dirname "$data")
  rm -rf "$data"
  mkdir -p "$data"
  chmod 700 "$parent" "$data"
  (( EUID == 0 )) && chown "$run_as:" "$parent" "$data"
  [[ -s $state/password ]] || (umask 077; python3 -c 'import secrets; print(secrets.token_hex(16))' >"$state/password")
  pwfile=$parent/initdb.pw  # a copy the owner can read for initdb, removed right after
  (umask 077; cp "$state/password" "$pwfile")
  (( EUID == 0 )) && chown "$run_as:" "$pwfile"
  # C collation: ORDER BY on ids sorts by bytes, as SQLite does
  as_owner "$bin/initdb" -D "$data" -U "$user" --pwfile="$pwfile" --auth-host=scram-sha-256 \
    --auth-local=peer -E UTF8 --locale=C >"$state/initdb.log" 2>&1 \
    || { rm -f "$pwfile"; cat "$state/initdb.log" >&2; die "initdb failed"; }
  rm -f "$pwfile"
  as_owner sh -c "echo \"include_if_exists = 'fundwatch.conf'\" >> '$data/postgresql.conf'"
}

write_config() {
  local port=$1
  # rewritten at every start (the port may change); edit the script, not this file
  as_owner sh -c "cat > '$data/fundwatch.conf'" <<CONF
listen_addresses = '$host'
port = $port
unix_socket_directories = ''
max_connections = 200
# a development and test server: a crash of the machine may lose the last commits, never consistency
synchronous_commit = off
lock_timeout = 0
CONF
}

start() {
  mkdir -p "$state"
  exec 9>"$state/lock"
  flock 9
  ensure_installed  # first: the package creates the postgres system user that prepare_state needs
  prepare_state
  data=$(data_dir)
  if running && answers; then
    log "already running on $host:$(port)"; dsn; return 0
  fi
  if ! running; then
    local p
    p=${PG_PORT:-$(port || true)}
    { [[ -n $p ]] && port_free "$p"; } || p=$(free_port)
    echo "$p" >"$state/port"
    initialise
    write_config "$p"
    log "starting PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on $host:$p"
    # setsid: the server outlives this shell and the make recipe that called it; the lock fd is not inherited
    setsid -w "$here/postgres.sh" __as_owner "$bin/pg_ctl" -D "$data" -l "$(dirname "$data")/server.log" -w -t "$start_timeout" start \
      </dev/null >>"$state/pg_ctl.log" 2>&1 9>&- || { tail -n 30 "$(dirname "$data")/server.log" >&2; die "the server did not start"; }
  fi
  local waited=0
  until answers; do
    (( waited >= start_timeout * 4 )) && { tail -n 30 "$(dirname "$data")/server.log" >&2; die "no answer after ${start_timeout}s"; }
    sleep 0.25; waited=$((waited + 1))
  done
  if [[ ! -f $state/created ]]; then
    PGPASSWORD=$(password) "$bin/psql" -q -v ON_ERROR_STOP=1 -h "$host" -p "$(port)" -U "$user" -d postgres \
      -c "create database $db" >/dev/null 2>&1 \
      || PGPASSWORD=$(password) "$bin/psql" -qtA -h "$host" -p "$(port)" -U "$user" -d postgres \
        -c "select 1 from pg_database where datname = '$db'" | grep -q 1 || die "cannot create database $db"
    touch "$state/created"
  fi
  log "ready (data $data)"
  dsn
}

stop() {
  [[ -d $state && -f $state/pgdata ]] || { log "not running"; return 0; }
  bin=$(bin_dir) || { log "not installed"; return 0; }
  data=$(data_dir)
  if ! running; then log "not running"; return 0; fi
  as_owner "$bin/pg_ctl" -D "$data" -m fast -w -t "$stop_timeout" stop >>"$state/pg_ctl.log" 2>&1 || {
    log "no clean stop after ${stop_timeout}s; immediate shutdown"
    as_owner "$bin/pg_ctl" -D "$data" -m immediate -w stop >>"$state/pg_ctl.log" 2>&1 || true
  }
  log "stopped"
}

# `setsid` takes a program, not a shell function: this script re-enters itself to run as the owner.
if [[ ${1:-} == __as_owner ]]; then shift; as_owner "$@"; exit $?; fi

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status|dsn)
    [[ -f $state/pgdata ]] && bin=$(bin_dir) && data=$(data_dir) && running && answers && { dsn; exit 0; }
    log "not running"; exit 1 ;;
  reset) stop; d=$( [[ -f $state/pgdata ]] && cat "$state/pgdata" || true ); [[ -n $d && $d != "$state"/* ]] && rm -rf "$(dirname "$d")"
    rm -rf "$state"; log "data removed" ;;
  *) echo "usage: $0 start|stop|status|dsn|reset" >&2; exit 2 ;;
esac
