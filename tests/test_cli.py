import socket

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
