#!/usr/bin/env python3
"""Ask a Kafka broker for cluster metadata; exit 0 only when it answers with a broker list.

Standard library only, so ops/kafka.sh can wait for the broker before any virtual
environment exists. Speaks Metadata v4 (the oldest version Kafka 4 still accepts, KIP-896):
request header v1, null topic array (all topics), no auto-creation.
"""
from __future__ import annotations

import socket
import struct
import sys

API_METADATA = 3
VERSION = 4


def _metadata_request(correlation_id: int) -> bytes:
    client_id = b"fundwatch-probe"
    header = struct.pack(">hhih", API_METADATA, VERSION, correlation_id, len(client_id)) + client_id
    body = struct.pack(">ib", -1, 0)  # topics=null (all), allow_auto_topic_creation=false
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def _read_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf += chunk
    return buf


def probe(host: str, port: int, timeout: float = 3.0) -> list[tuple[int, str, int]]:
    """Return the brokers the cluster reports as (node_id, host, port)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(_metadata_request(7))
        (size,) = struct.unpack(">i", _read_exact(sock, 4))
        data = _read_exact(sock, size)
    (corr,) = struct.unpack_from(">i", data, 0)
    if corr != 7:
        raise ValueError(f"unexpected correlation id {corr}")
    pos = 4 + 4  # correlation id, throttle_time_ms
    (n_brokers,) = struct.unpack_from(">i", data, pos)
    pos += 4
    brokers = []
    for _ in range(n_brokers):
        node_id, hlen = struct.unpack_from(">ih", data, pos)
        pos += 6
        bhost = data[pos:pos + hlen].decode()
        pos += hlen
        (bport, rlen) = struct.unpack_from(">ih", data, pos)
        pos += 6 + max(rlen, 0)
        brokers.append((node_id, bhost, bport))
    return brokers


def main(argv: list[str]) -> int:
    host, _, port = (argv[1] if len(argv) > 1 else "127.0.0.1:9092").rpartition(":")
    try:
        brokers = probe(host, int(port))
    except (OSError, ValueError, struct.error) as exc:
        print(f"no metadata from {host}:{port}: {exc}", file=sys.stderr)
        return 1
    if not brokers:
        print(f"{host}:{port} answered with no brokers", file=sys.stderr)
        return 1
    print(" ".join(f"{nid}@{h}:{p}" for nid, h, p in brokers))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
