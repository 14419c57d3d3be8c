# Shell helpers shared by the project's server scripts (ops/kafka.sh, ops/postgres.sh); sourced, not run.

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

port_free() {
  python3 -c 'import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try: s.bind(("127.0.0.1",int(sys.argv[1])))
except OSError: sys.exit(1)' "$1"
}
