import socket

import pytest

from service.cli import main


def test_produce_without_a_broker_says_so_clearly(small_world_dir, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["--bootstrap", f"127.0.0.1:{port}", "produce", str(small_world_dir)]) == 2
    err = capsys.readouterr().err
    assert f"no Kafka broker answers at 127.0.0.1:{port}" in err and "ops/kafka.sh start" in err


def test_simulate_writes_the_five_files_and_labels(tmp_path, capsys):
    assert main(["simulate", "--platforms", "6", "--days", "20", "--seed", "4", "--out", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["accounts.avro", "disclosures.avro", "labels.json", "listings.avro", "platforms.avro",
                     "transactions.avro"]
    assert '"scheme_platforms"' in capsys.readouterr().out


def test_replay_of_a_file_whose_header_names_undefined_types_says_which_file_and_why(tmp_path, capsys):
    # the independent world's first files named the shared types (fundwatch.Money...) without defining them:
    # replay answered with fastavro's UnknownType traceback from the middle of the run
    import json

    import fastavro

    from ingest.simulator import simulate, write_world

    write_world(simulate(4, 10, 3), tmp_path)
    header = {"type": "record", "name": "Account", "namespace": "fundwatch",
              "fields": [{"name": "account_id", "type": "string"}, {"name": "role", "type": "fundwatch.AccountRole"}]}

    def long(n: int) -> bytes:  # Avro's zig-zag varint
        z, out = (n << 1) ^ (n >> 63), b""
        while z & ~0x7F:
            out += bytes([(z & 0x7F) | 0x80])
            z >>= 7
        return out + bytes([z])

    meta = {b"avro.schema": json.dumps(header).encode(), b"avro.codec": b"null"}
    body = b"Obj\x01" + long(len(meta)) + b"".join(long(len(k)) + k + long(len(v)) + v for k, v in meta.items())
    (tmp_path / "accounts.avro").write_bytes(body + long(0) + b"\x00" * 16)  # a writer that never defined AccountRole
    with open(tmp_path / "accounts.avro", "rb") as fh, pytest.raises(Exception, match="AccountRole"):
        fastavro.reader(fh)  # fastavro itself refuses it
    code = main(["replay", str(tmp_path), "--report", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code == 2 and "accounts.avro: not a readable Avro container file" in err and "AccountRole" in err
    assert not (tmp_path / "r.json").exists()
