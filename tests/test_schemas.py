import json
from pathlib import Path

import fastavro
import pytest

import schemas
from schemas.fingerprint import crc64_avro
from schemas.wire import (ConfluentFraming, FramingError, SingleObjectFraming, decode_body, encode_body,
                          encode_single_object)

TX = dict(tx_id="t1", custodian_id="CB01", platform_id="P1", ts=1_451_606_400_000, type="REPAY",
          from_account="A1", to_account="A2", amount=12_345, currency="CNY", listing_id="L1", interest=345,
          memo="利息")


def test_fingerprints_agree_with_fastavro_and_the_spec():
    # the Avro spec's fingerprint of the schema "int" (CRC-64-AVRO), and fastavro's little-endian hex
    assert crc64_avro(b'"int"') == 0x7275D51A3F395C8F
    for s in schemas.all_schemas():
        assert s.fingerprint_le.hex() == fastavro.schema.fingerprint(s.canonical, "CRC-64-AVRO")


def test_contract_names_are_exact():
    raw = {s.name: s.raw for s in schemas.all_schemas()}
    assert {f["name"] for f in raw["Transaction"]["fields"]} == {
        "tx_id", "custodian_id", "platform_id", "ts", "type", "from_account", "to_account", "amount", "currency",
        "listing_id", "interest", "memo"}
    tx_type = next(f for f in raw["Transaction"]["fields"] if f["name"] == "type")["type"]
    assert tx_type["name"] == "TxType" and tx_type["symbols"] == [
        "DEPOSIT", "WITHDRAWAL", "INVEST", "DISBURSE", "REPAY", "PAYOUT", "FEE", "TRANSFER", "REFUND"]
    role = next(f for f in raw["Account"]["fields"] if f["name"] == "role")["type"]
    assert role["symbols"] == ["INVESTOR", "BORROWER", "PLATFORM_OWN", "CUSTODY_POOL", "RISK_RESERVE",
                               "CLIENT_RESERVE", "EXTERNAL"]
    kind = next(f for f in raw["Platform"]["fields"] if f["name"] == "kind")["type"]
    assert kind["symbols"] == ["P2P_LENDING", "EQUITY_CROWDFUNDING", "INTERNET_INSURANCE", "ASSET_MANAGEMENT",
                               "THIRD_PARTY_PAYMENT", "TRADING_VENUE", "PRIVATE_FINANCE"]
    assert all(r["namespace"] == "fundwatch" for r in raw.values())
    ts = next(f for f in raw["Transaction"]["fields"] if f["name"] == "ts")["type"]
    assert ts == {"type": "long", "logicalType": "timestamp-millis"}


def test_single_object_round_trip_keeps_times_as_millis():
    data = encode_single_object("Transaction", TX)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == schemas.schema("Transaction").fingerprint_le
    s, body = SingleObjectFraming().unframe(data)
    assert s.name == "Transaction"
    assert decode_body(s, body) == TX


@pytest.mark.parametrize("data,needle", [
    (b"", "not Avro single-object"),
    (b"\x00\x01" + b"\x00" * 12, "not Avro single-object"),
    (b"\xc3\x01" + b"\x11" * 8 + b"\x00", "unknown schema fingerprint 1111111111111111"),
])
def test_unframe_rejects_with_a_reason(data, needle):
    with pytest.raises(FramingError, match=needle):
        SingleObjectFraming().unframe(data)


def test_trailing_bytes_are_an_error():
    s = schemas.schema("Transaction")
    with pytest.raises(FramingError, match="trailing"):
        decode_body(s, encode_body(s, TX) + b"\x00")


class InMemoryRegistry:
    """Stands in for a schema registry's id bookkeeping in this unit test only."""

    def __init__(self):
        self.ids = {}

    def register(self, subject, s):
        return self.ids.setdefault(s.name, 41 + len(self.ids))

    def lookup(self, schema_id):
        name = {v: k for k, v in self.ids.items()}.get(schema_id)
        if name is None:
            raise FramingError(f"unknown schema id {schema_id}")
        return schemas.schema(name)


def test_confluent_framing_round_trip():
    framing = ConfluentFraming(InMemoryRegistry(), {"Transaction": "custody.transactions-value"})
    data = framing.frame("Transaction", TX)
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == 41
    s, body = framing.unframe(data)
    assert decode_body(s, body) == TX
    with pytest.raises(FramingError):
        framing.unframe(b"\xc3\x01" + data)


def test_avsc_files_are_valid_json_and_parse_with_one_shared_parser():
    named: dict = {}  # one parser state for every file, as Avro Java's Schema.Parser and registries keep
    for full, fname in schemas.TYPE_FILES.items():
        assert fastavro.parse_schema(json.loads((schemas._HERE / fname).read_text(encoding="utf-8")), named)["name"] == full
    for name, fname in schemas.RECORD_FILES.items():
        raw = json.loads((schemas._HERE / fname).read_text(encoding="utf-8"))
        assert raw["name"] == name
        assert fastavro.parse_schema(raw, named)["name"] == f"fundwatch.{name}"


def _definitions(node, out, where):
    if isinstance(node, dict):
        if node.get("type") in ("record", "enum", "fixed"):
            out.setdefault(node["name"].rsplit(".", 1)[-1], []).append(where)
        for v in node.values():
            _definitions(v, out, where)
    elif isinstance(node, list):
        for v in node:
            _definitions(v, out, where)


def test_every_named_type_is_defined_in_exactly_one_file():
    defs: dict = {}
    for fname in [*schemas.TYPE_FILES.values(), *schemas.RECORD_FILES.values()]:
        _definitions(json.loads((schemas._HERE / fname).read_text(encoding="utf-8")), defs, fname)
    assert {n: w for n, w in defs.items() if len(w) > 1} == {}
    for shared in ("PlatformKind", "Licence", "Tier", "Disposition", "Severity"):
        assert defs[shared] == [f"types/{shared}.avsc"]


def test_canonical_forms_and_fingerprints_are_those_of_the_original_schemas():
    """The wire contract: what the schemas were before the shared types moved to types/ (tests/fixtures), with
    the fields added since (Account.holder_kind); each earlier form stays readable (the test after this one)."""
    golden = json.loads((Path(__file__).parent / "fixtures" / "canonical_forms.json").read_text(encoding="utf-8"))
    assert set(golden) == set(schemas.RECORD_FILES)
    for s in schemas.all_schemas():
        assert s.canonical == golden[s.name]["canonical"], s.name
        assert s.fingerprint_le.hex() == golden[s.name]["fingerprint_le"], s.name
        assert s.fingerprint_le.hex() == fastavro.schema.fingerprint(s.canonical, "CRC-64-AVRO")
    # the expanded schema defines each shared type at its first use and names it after
    alert = json.dumps(schemas.schema("Alert").raw)
    assert alert.count('"name": "Tier"') == 1 and alert.count('"name": "Severity"') == 1


def test_the_account_before_holder_kind_is_still_fundwatchs_own_and_resolves():
    """Account gained holder_kind (a compatible evolution: optional, default null). Its earlier fingerprint, the
    one banks publish with until they upgrade, is still known without any schema directory."""
    old = schemas.by_fingerprint(bytes.fromhex("3db7d322d60cf9ed"))  # the golden Account before holder_kind
    assert old is not None and old.name == "Account" and old.writer is not None
    bank = json.loads((Path(__file__).parent / "fixtures" / "writer_schemas" / "account_v1.avsc").read_text("utf-8"))
    assert schemas.writer_schema(bank, "bank").fingerprint == old.fingerprint  # what a bank's copy says
    row = dict(account_id="A1", platform_id="P1", holder_id="H1", role="BORROWER", custodian_id=None,
               opened_at=1_451_606_400_000)
    assert decode_body(old, encode_body(old, row)) == {**row, "holder_kind": None}
    new = schemas.schema("Account")
    assert decode_body(new, encode_body(new, {**row, "holder_kind": "LEGAL_PERSON"}))["holder_kind"] == "LEGAL_PERSON"
