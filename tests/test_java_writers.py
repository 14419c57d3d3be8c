"""Records written by the Java libraries a bank uses, read through fundwatch without loss.

Apache avro-tools writes container files with a newer writer schema (fields added with defaults)
and an older one (int amount, float rate), with every Avro codec; a small Java program
(tests/java/BankWriter.java, compiled here with javac) parses fundwatch's schema files with one
shared Schema.Parser and produces single-object encoded messages with kafka-clients, with every
Kafka compression type, to the real broker. The jars come from ops/java/pom.xml via ops/java.sh.
Without Java or Maven these tests fail: they never skip.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import fastavro
import pytest

import schemas
from ingest.decode import Envelope, decode
from ingest.sources import FILES, FileSource
from schemas import SchemaCatalog
from schemas.records import Account, Transaction
from schemas.wire import SingleObjectFraming
from tests.test_evolution import WRITERS, v0_listing, v2_tx, writer
from tests.test_kafka_avro import KAFKA_CODECS, batch_codecs, read_all

ROOT = Path(__file__).resolve().parents[1]
AVRO_CODECS = ["null", "deflate", "snappy", "bzip2", "xz", "zstandard"]
LEVEL = {"xz": "6"}  # avro-tools' default level (-1) is not an xz preset


def run(cmd: list[str], timeout: float = 300) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        pytest.fail(f"{' '.join(cmd[:4])} ... exited {res.returncode}:\n{res.stderr[-3000:]}")
    return res.stdout


@pytest.fixture(scope="session")
def java(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The bank's Java toolchain: classpath and avro-tools from Maven, BankWriter compiled with javac."""
    for tool in ("java", "javac", "mvn"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: these tests need Java 17 (JDK) and Maven, like ops/kafka.sh")
    cp = run([str(ROOT / "ops" / "java.sh"), "classpath"], timeout=900).strip()
    tools = run([str(ROOT / "ops" / "java.sh"), "avro-tools"]).strip()
    classes = tmp_path_factory.mktemp("java-classes")
    run(["javac", "-d", str(classes), "-cp", cp, str(ROOT / "tests" / "java" / "BankWriter.java")])
    return {"cp": f"{classes}:{cp}", "avro_tools": tools}


def avro_json(path: Path, schema_file: str, records: list[dict[str, Any]]) -> Path:
    """Records in Avro's JSON encoding, one per line: what avro-tools fromjson and a JSON decoder read."""
    with open(path, "w", encoding="utf-8") as fh:
        fastavro.json_writer(fh, fastavro.parse_schema(writer(schema_file)), records)
    return path


def reader_view(r: dict[str, Any], added: tuple[str, ...] = ("channel", "branch_code")) -> dict[str, Any]:
    return {k: v for k, v in r.items() if k not in added}


def test_one_java_schema_parser_takes_every_file_and_agrees_on_every_fingerprint(java):
    files = [str(schemas._HERE / f) for f in [*schemas.TYPE_FILES.values(), *schemas.RECORD_FILES.values()]]
    out = run(["java", "-cp", java["cp"], "BankWriter", "parse", *files])
    got = dict(line.split() for line in out.splitlines())
    assert got == {f"fundwatch.{s.name}": s.fingerprint_le.hex() for s in schemas.all_schemas()}


def test_avro_tools_container_files_with_every_codec_and_evolved_writers_are_read_without_loss(java, tmp_path):
    txs = [v2_tx(i) for i in range(300)]
    listings = [v0_listing(i) for i in range(20)]
    tx_json = avro_json(tmp_path / "tx.json", "transaction_v2.avsc", txs)
    listing_json = avro_json(tmp_path / "listing.json", "listing_v0.avsc", listings)

    def write(codec: str) -> Path:
        out = tmp_path / codec
        out.mkdir()
        for name, src, schema_file in (("Transaction", tx_json, "transaction_v2.avsc"),
                                       ("Listing", listing_json, "listing_v0.avsc")):
            level = ["--level", LEVEL[codec]] if codec in LEVEL else []
            data = subprocess.run(["java", "-jar", java["avro_tools"], "fromjson", "--codec", codec, *level,
                                   "--schema-file", str(WRITERS / schema_file), str(src)],
                                  capture_output=True, timeout=300)
            assert data.returncode == 0, data.stderr.decode(errors="replace")[-2000:]
            (out / FILES[name]).write_bytes(data.stdout)
        return out

    with ThreadPoolExecutor(3) as pool:  # a JVM per file; two cores
        dirs = dict(zip(AVRO_CODECS, pool.map(write, AVRO_CODECS)))
    for codec, directory in dirs.items():
        with open(directory / FILES["Transaction"], "rb") as fh:
            assert fastavro.reader(fh).codec == codec
        rows = [m for batch in iter(FileSource(directory).poll, None) for m in batch]
        got_tx = [m.row for m in rows if m.expected == "Transaction"]
        got_listings = [m.row for m in rows if m.expected == "Listing"]
        assert len(got_tx) == len(txs) and len(got_listings) == len(listings), codec
        assert got_tx == [reader_view(r) for r in txs], codec
        assert got_listings == [{**r, "borrower_account": None} for r in listings], codec
        assert all(isinstance(decode(m, SingleObjectFraming()), Envelope) for m in rows), codec


def old_accounts(n: int) -> list[dict[str, Any]]:
    """Accounts as a bank writes them with the Account before holder_kind (tests/fixtures/writer_schemas)."""
    return [dict(account_id=f"A{i}", platform_id="P1", holder_id=f"H{i % 3}", role="BORROWER",
                 custodian_id="CB01" if i % 2 else None, opened_at=1_451_606_400_000 + i) for i in range(n)]


def test_avro_tools_accounts_written_before_holder_kind_are_read(java, tmp_path):
    rows = old_accounts(20)
    data = subprocess.run(["java", "-jar", java["avro_tools"], "fromjson", "--codec", "deflate", "--schema-file",
                           str(WRITERS / "account_v1.avsc"), str(avro_json(tmp_path / "a.json", "account_v1.avsc", rows))],
                          capture_output=True, timeout=300)
    assert data.returncode == 0, data.stderr.decode(errors="replace")[-2000:]
    (tmp_path / FILES["Account"]).write_bytes(data.stdout)
    got = [m.row for batch in iter(FileSource(tmp_path).poll, None) for m in batch]
    assert got == [{**r, "holder_kind": None} for r in rows]


@pytest.mark.kafka
def test_java_kafka_producer_accounts_before_holder_kind_resolve_without_a_schema_directory(
        java, kafka_bootstrap, topic_prefix, tmp_path):
    """A bank's Java producer still on the earlier Account: fundwatch knows that fingerprint as its own."""
    from kafka.admin import KafkaAdminClient, NewTopic

    topic = f"{topic_prefix}bank.accounts.lz4"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        admin.close()
    rows = old_accounts(30)
    out = run(["java", "-cp", java["cp"], "BankWriter", "produce", kafka_bootstrap, f"{topic_prefix}bank.accounts.",
               "lz4", str(WRITERS / "account_v1.avsc"), str(avro_json(tmp_path / "a.json", "account_v1.avsc", rows))])
    assert out.split() == [topic, str(len(rows))]
    got = read_all(kafka_bootstrap, {topic: "Account"}, len(rows), f"{topic_prefix}accounts")
    records = []
    for m in got:
        item = decode(m, SingleObjectFraming())  # no schema directory: the earlier Account is fundwatch's own
        assert isinstance(item, Envelope), item
        records.append(item.record)
    assert sorted(records, key=lambda a: a.account_id) == sorted((Account(**r) for r in rows),
                                                                 key=lambda a: a.account_id)
    assert all(a.holder_kind is None for a in records)


@pytest.mark.kafka
def test_java_kafka_producer_single_object_messages_with_every_compression(java, kafka_bootstrap, topic_prefix,
                                                                           tmp_path):
    from kafka.admin import KafkaAdminClient, NewTopic

    base = f"{topic_prefix}bank.transactions."
    topics = {base + codec: "Transaction" for codec in KAFKA_CODECS}
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(t, 3, 1) for t in topics])
    finally:
        admin.close()
    txs = [v2_tx(i) for i in range(200)]
    out = run(["java", "-cp", java["cp"], "BankWriter", "produce", kafka_bootstrap, base, ",".join(KAFKA_CODECS),
               str(WRITERS / "transaction_v2.avsc"), str(avro_json(tmp_path / "tx.json", "transaction_v2.avsc", txs))])
    assert out.split() == [x for codec in KAFKA_CODECS for x in (base + codec, str(len(txs)))]
    framing = SingleObjectFraming(SchemaCatalog([WRITERS]))
    expected = sorted((Transaction(**reader_view(r)) for r in txs), key=lambda t: t.tx_id)
    for topic in topics:
        codec = topic.rsplit(".", 1)[1]
        assert batch_codecs(topic) == {KAFKA_CODECS[codec]}, topic
        got = read_all(kafka_bootstrap, {topic: "Transaction"}, len(txs), f"{topic_prefix}{codec}")
        assert len(got) == len(txs), topic
        records = []
        for m in got:
            item = decode(m, framing)
            assert isinstance(item, Envelope), item
            records.append(item.record)
        assert sorted(records, key=lambda t: t.tx_id) == expected, topic
    # without the bank's schema in the directory, every one would be a dead letter: the directory is what saves them
    assert "unknown schema fingerprint" in str(decode(got[0], SingleObjectFraming()))
