"""Hand-built ledgers and in-memory sources for unit tests."""
from __future__ import annotations

from typing import Any

from graph.ledger import Ledger
from ingest.decode import RawMessage
from schemas.records import DAY_MS, Account, Listing, Platform, Transaction
from schemas.wire import encode_single_object

T0 = 1_451_606_400_000
H = 3_600_000
WAN = 1_000_000  # 1万元 in fen


class Book:
    """A tiny custody ledger written by hand: accounts by short name, transactions numbered."""

    def __init__(self, platform_id: str = "P1", kind: str = "P2P_LENDING", related: tuple[str, ...] = ("CTRL",),
                 advertised: float | None = None, licence: str = "LICENSED") -> None:
        self.pid = platform_id
        self.ledger = Ledger()
        self.n = 0
        self.ledger.apply(Platform(platform_id, "连云港测试网络借贷信息中介有限公司", kind, licence, "320703",
                                   "网络借贷信息中介", T0, custodian_id="CB01", related_parties=list(related),
                                   advertised_annual_yield=advertised))

    def account(self, name: str, role: str, holder: str | None = None) -> str:
        self.ledger.apply(Account(name, self.pid, holder or f"H-{name}", role, T0))
        return name

    def listing(self, lid: str, kind: str, amount: int, rate: float, term: int, day: int = 0,
                borrower: str | None = None) -> str:
        self.ledger.apply(Listing(lid, self.pid, kind, amount, rate, term, T0 + day * DAY_MS, borrower))
        return lid

    def tx(self, day: float, type_: str, src: str, dst: str, amount: int, listing: str | None = None,
           interest: int | None = None) -> str:
        self.n += 1
        tid = f"T{self.n}"
        res = self.ledger.apply(Transaction(tid, "CB01", self.pid, T0 + int(day * DAY_MS), type_, src, dst, amount,
                                            listing_id=listing, interest=interest))
        assert res.applied, res.reason
        return tid


def raw(topic: str, partition: int, offset: int, name: str, record: dict[str, Any]) -> RawMessage:
    return RawMessage(topic, partition, offset, name, value=encode_single_object(name, record))


class ListSource:
    """A finite in-memory source of framed messages, in batches."""

    def __init__(self, messages: list[RawMessage], batch: int = 3) -> None:
        self.messages = list(messages)
        self.batch = batch
        self.commits: list[dict[tuple[str, int], int]] = []

    def poll(self):
        if not self.messages:
            return None
        out, self.messages = self.messages[: self.batch], self.messages[self.batch:]
        return out

    def commit(self, offsets):
        self.commits.append(dict(offsets))

    def caught_up(self):
        return not self.messages

    def close(self):
        pass
