"""The door: every input record is checked against the contract's meaning before it touches state.

Avro says a field is a long or a double; this module says what the number may mean. A record
that fails goes to the dead letters (stage "validate") with the reason returned here, once, and
the stream goes on. `validate` is a pure function; `Gate` adds the one piece of state it needs
(each input partition's event time) and is what the pipeline calls, once per record.

Limits (defaults; the tunable ones are `FUNDWATCH_VALIDATE_*` settings, see README "Bad input"):

| what | limit | why |
|---|---|---|
| every float | finite | NaN or infinity poisons medians, ranks and the pyod fit |
| ids (platform, account, listing, tx, holder, receipt, custodian) | 1..128 characters | keys in the graph, the store and URLs |
| jurisdiction | exactly 6 ASCII digits | administrative division code (GB/T 2260); scopes match on it |
| names | at most 256 characters | registered company names are far shorter |
| business scope, memo | at most 4,096 characters | a registered business scope fits in a few hundred |
| related_parties | at most 1,000 entries | each becomes a graph edge |
| yield_by_term | at most 64 entries, labels 1..64 characters | term buckets, a handful in practice |
| money (fen): amount, volume, outstanding, related-party outstanding | 0..10^15 (amounts > 0) | 10^15 fen is 10 trillion yuan, above any single movement of client money; 9,223 of them still fit an int64 |
| interest | 0..amount | part of the movement |
| promised rates (Listing.annual_rate, advertised yield, yield_by_term) | 0..10 (1000 % a year) | above any promise even a Ponzi scheme makes, below nonsense |
| disclosed average yield | -1..10 | a realised yield can be a loss, never more than the whole principal |
| shares (top-10 borrower and investor), overdue rate | 0..1 | fractions |
| term_days, avg_term_days | 0..36,500 | a hundred years |
| counts (investors, borrowers, complaints) | 0..2^31-1 | Avro int, never negative |
| enums (kind, licence, role, background, type) | the contract's symbols | records built in Python skip Avro's check |
| every timestamp | 1990-01-01 .. wall clock + 1 day | nothing in this contract predates internet finance or is from tomorrow |

Event time. The stream's event time is the newest time accepted at the door or applied by the ledger
(`now_ms`), whichever is later; the first record sets it. Each record type has one field that moves it; how far that field may lead the
stream, and how far it may trail its own input partition's event time, depends on the type:

| record (field) | ahead of the stream | behind its partition | why |
|---|---|---|---|
| Transaction (ts) | 7 days | 7 days | money is dense and nearly in order; late + ahead must stay within the ledger's 14-day duplicate memory, so a re-sent transaction that passes here is always recognised |
| Platform (updated_at), Account (opened_at), Listing (listed_at) | 45 days | any | registry entries may describe the past; a registry-and-disclosure stream advances a month at a time |
| Disclosure (period_end) | 45 days | 400 days | monthly; a restatement of last year is fine, older falls outside the twelve kept |
| Tip (received_at), Platform (launched_at) | never moves time | any | a tip counts from its receipt on, in every window that starts before it |
| Outcome (decided_at) | never moves time | any | a label, often decided months after the data it judges; it must not make every platform look silent |

Lateness is measured against the record's own (topic, partition), not the whole stream: on Kafka
the topics and partitions are read at their own pace (a rebuild can read one partition's whole
history before the next one starts), so a record is late only when its own ordered input has
moved on without it. A record too far ahead is refused and so never moves time.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

from ingest.decode import Envelope
from schemas.records import DAY_MS, Account, Disclosure, Listing, Outcome, Platform, Record, Tip, Transaction

__all__ = ["Limits", "DEFAULT_LIMITS", "Gate", "validate", "check_content", "check_time", "event_time",
           "transaction_reason", "INT64_MAX"]

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1

PLATFORM_KINDS = frozenset(("P2P_LENDING", "EQUITY_CROWDFUNDING", "INTERNET_INSURANCE", "ASSET_MANAGEMENT",
                            "THIRD_PARTY_PAYMENT", "TRADING_VENUE", "PRIVATE_FINANCE"))
LICENCES = frozenset(("LICENSED", "UNLICENSED", "SCOPE_MISMATCH"))
ACCOUNT_ROLES = frozenset(("INVESTOR", "BORROWER", "PLATFORM_OWN", "CUSTODY_POOL", "RISK_RESERVE",
                           "CLIENT_RESERVE", "EXTERNAL"))
HOLDER_KINDS = frozenset(("NATURAL_PERSON", "LEGAL_PERSON"))
BACKGROUNDS = frozenset(("STATE_OWNED", "LISTED", "VC_BACKED", "BANK", "PRIVATE"))
LISTING_KINDS = frozenset(("LOAN", "PRODUCT"))
OUTCOME_STATUSES = frozenset(("NORMAL", "RECTIFYING", "SUSPENDED", "CLOSED", "WITHDRAWAL_DIFFICULTY",
                              "POLICE_INVESTIGATION", "RUN_AWAY"))
TX_TYPES = frozenset(("DEPOSIT", "WITHDRAWAL", "INVEST", "DISBURSE", "REPAY", "PAYOUT", "FEE", "TRANSFER", "REFUND"))
_DIGITS = frozenset("0123456789")


@dataclass(frozen=True, slots=True)
class Limits:
    """The table in the module docstring, as numbers. Times in milliseconds."""

    max_amount: int = 10**15
    max_id_len: int = 128
    max_name_len: int = 256
    max_text_len: int = 4_096
    max_related_parties: int = 1_000
    max_yield_terms: int = 64
    max_term_label_len: int = 64
    max_annual_rate: float = 10.0
    min_disclosed_yield: float = -1.0
    max_term_days: int = 36_500
    time_floor_ms: int = 631_152_000_000  # 1990-01-01T00:00:00Z
    wall_skew_ms: int = DAY_MS
    money_ahead_ms: int = 7 * DAY_MS
    money_late_ms: int = 7 * DAY_MS
    registry_ahead_ms: int = 45 * DAY_MS
    disclosure_ahead_ms: int = 45 * DAY_MS
    disclosure_late_ms: int = 400 * DAY_MS


DEFAULT_LIMITS = Limits()


# ---- content: what a record may say, whatever the time -----------------------------------------------
def _id(name: str, v: object, lim: Limits) -> str | None:
    if not isinstance(v, str) or not v:
        return f"{name} is empty"
    if len(v) > lim.max_id_len:
        return f"{name} has {len(v)} characters (at most {lim.max_id_len})"
    return None


def _text(name: str, v: object, cap: int, *, optional: bool = True) -> str | None:
    if v is None and optional:
        return None
    if not isinstance(v, str):
        return f"{name} is not a string"
    if len(v) > cap:
        return f"{name} has {len(v)} characters (at most {cap})"
    return None


def _int(name: str, v: object, lo: int, hi: int) -> str | None:
    if not isinstance(v, int) or isinstance(v, bool):
        return f"{name} is not an integer"
    if v < lo or v > hi:
        return f"{name} {v} outside {lo}..{hi}"
    return None


def _float(name: str, v: object, lo: float, hi: float) -> str | None:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return f"{name} is not a number"
    if not math.isfinite(v):
        return f"{name} is not finite ({v})"
    if v < lo or v > hi:
        return f"{name} {v} outside {lo}..{hi}"
    return None


def _enum(name: str, v: object, allowed: frozenset[str]) -> str | None:
    return None if v in allowed else f"{name} {str(v)[:32]!r} is not one of the contract's symbols"


def _first(*reasons: str | None) -> str | None:
    for r in reasons:
        if r:
            return r
    return None


def transaction_reason(tx: Transaction, lim: Limits = DEFAULT_LIMITS) -> str | None:
    """The hot path: straight-line checks, cheapest and commonest first."""
    a = tx.amount
    if type(a) is not int:
        return "amount is not an integer"
    if a <= 0:
        return f"non-positive amount {a}"
    if a > lim.max_amount:
        return f"amount {a} above the ceiling {lim.max_amount} fen"
    if tx.interest is not None:
        i = tx.interest
        if type(i) is not int or i < 0 or i > a:
            return f"interest {i} outside 0..amount {a}"
    if tx.from_account == tx.to_account:
        return "payer and payee are the same account"
    if tx.type not in TX_TYPES:
        return _enum("type", tx.type, TX_TYPES)
    m = lim.max_id_len
    if type(tx.tx_id) is not str or not 0 < len(tx.tx_id) <= m:
        return _id("tx_id", tx.tx_id, lim)
    if type(tx.custodian_id) is not str or not 0 < len(tx.custodian_id) <= m:
        return _id("custodian_id", tx.custodian_id, lim)
    if type(tx.platform_id) is not str or not 0 < len(tx.platform_id) <= m:
        return _id("platform_id", tx.platform_id, lim)
    if type(tx.from_account) is not str or not 0 < len(tx.from_account) <= m:
        return _id("from_account", tx.from_account, lim)
    if type(tx.to_account) is not str or not 0 < len(tx.to_account) <= m:
        return _id("to_account", tx.to_account, lim)
    if tx.listing_id is not None and (type(tx.listing_id) is not str or not tx.listing_id or len(tx.listing_id) > m):
        return _id("listing_id", tx.listing_id, lim)
    if type(tx.currency) is not str or not 1 <= len(tx.currency) <= 8:
        return f"currency {str(tx.currency)[:16]!r} is not a currency code"
    if tx.memo is not None and (type(tx.memo) is not str or len(tx.memo) > lim.max_text_len):
        return _text("memo", tx.memo, lim.max_text_len)
    if type(tx.ts) is not int or not 0 <= tx.ts <= INT64_MAX:
        return _int("ts", tx.ts, 0, INT64_MAX)
    return None


def _platform(p: Platform, lim: Limits) -> str | None:
    j = p.jurisdiction
    if not (isinstance(j, str) and len(j) == 6 and set(j) <= _DIGITS):
        return f"jurisdiction {str(j)[:16]!r} is not a 6-digit division code"
    if not isinstance(p.related_parties, list):
        return "related_parties is not a list"
    if len(p.related_parties) > lim.max_related_parties:
        return f"related_parties has {len(p.related_parties)} entries (at most {lim.max_related_parties})"
    return _first(
        _id("platform_id", p.platform_id, lim),
        _text("name", p.name, lim.max_name_len, optional=False),
        _enum("kind", p.kind, PLATFORM_KINDS), _enum("licence", p.licence, LICENCES),
        _text("business_scope", p.business_scope, lim.max_text_len, optional=False),
        None if p.background is None else _enum("background", p.background, BACKGROUNDS),
        None if p.custodian_id is None else _id("custodian_id", p.custodian_id, lim),
        None if p.advertised_annual_yield is None else _float(
            "advertised_annual_yield", p.advertised_annual_yield, 0.0, lim.max_annual_rate),
        *(_id("related party", h, lim) for h in p.related_parties),
        _int("updated_at", p.updated_at, 0, INT64_MAX),
        None if p.launched_at is None else _int("launched_at", p.launched_at, 0, INT64_MAX))


def _account(a: Account, lim: Limits) -> str | None:
    return _first(_id("account_id", a.account_id, lim), _id("platform_id", a.platform_id, lim),
                  _id("holder_id", a.holder_id, lim), _enum("role", a.role, ACCOUNT_ROLES),
                  None if a.custodian_id is None else _id("custodian_id", a.custodian_id, lim),
                  _int("opened_at", a.opened_at, 0, INT64_MAX),
                  None if a.holder_kind is None else _enum("holder_kind", a.holder_kind, HOLDER_KINDS))


def _listing(x: Listing, lim: Limits) -> str | None:
    return _first(_id("listing_id", x.listing_id, lim), _id("platform_id", x.platform_id, lim),
                  _enum("kind", x.kind, LISTING_KINDS),
                  None if x.borrower_account is None else _id("borrower_account", x.borrower_account, lim),
                  _int("amount", x.amount, 1, lim.max_amount),
                  _float("annual_rate", x.annual_rate, 0.0, lim.max_annual_rate),
                  _int("term_days", x.term_days, 0, lim.max_term_days),
                  _int("listed_at", x.listed_at, 0, INT64_MAX))


def _disclosure(d: Disclosure, lim: Limits) -> str | None:
    ybt = d.yield_by_term
    if not isinstance(ybt, dict):
        return "yield_by_term is not a map"
    if len(ybt) > lim.max_yield_terms:
        return f"yield_by_term has {len(ybt)} entries (at most {lim.max_yield_terms})"
    for k, v in ybt.items():
        r = _text("yield_by_term label", k, lim.max_term_label_len, optional=False) or (
            "yield_by_term label is empty" if not k else None) or _float(
            f"yield_by_term[{k}]", v, 0.0, lim.max_annual_rate)
        if r:
            return r

    def money(name: str, v: int | None) -> str | None:
        return None if v is None else _int(name, v, 0, lim.max_amount)

    def share(name: str, v: float | None) -> str | None:
        return None if v is None else _float(name, v, 0.0, 1.0)

    return _first(
        _id("platform_id", d.platform_id, lim), _int("period_end", d.period_end, 0, INT64_MAX),
        _int("investors", d.investors, 0, INT32_MAX), _int("borrowers", d.borrowers, 0, INT32_MAX),
        None if d.complaints is None else _int("complaints", d.complaints, 0, INT32_MAX),
        money("volume", d.volume), money("outstanding", d.outstanding),
        money("related_party_outstanding", d.related_party_outstanding),
        None if d.avg_annual_yield is None else _float(
            "avg_annual_yield", d.avg_annual_yield, lim.min_disclosed_yield, lim.max_annual_rate),
        None if d.avg_term_days is None else _float("avg_term_days", d.avg_term_days, 0.0, lim.max_term_days),
        share("top10_borrower_share", d.top10_borrower_share), share("top10_investor_share", d.top10_investor_share),
        share("overdue_rate", d.overdue_rate))


def _tip(t: Tip, lim: Limits) -> str | None:
    return _first(_id("receipt_id", t.receipt_id, lim), _id("platform_id", t.platform_id, lim),
                  _int("received_at", t.received_at, 0, INT64_MAX))


def _outcome(o: Outcome, lim: Limits) -> str | None:
    return _first(_id("platform_id", o.platform_id, lim), _enum("status", o.status, OUTCOME_STATUSES),
                  _int("decided_at", o.decided_at, 0, INT64_MAX),
                  _text("source", o.source, lim.max_name_len, optional=False), _text("note", o.note, lim.max_text_len))


def check_content(rec: Record, lim: Limits = DEFAULT_LIMITS) -> str | None:
    """Why the record says something the contract does not allow, or None. No time context needed."""
    if isinstance(rec, Transaction):
        return transaction_reason(rec, lim)
    if isinstance(rec, Account):
        return _account(rec, lim)
    if isinstance(rec, Listing):
        return _listing(rec, lim)
    if isinstance(rec, Disclosure):
        return _disclosure(rec, lim)
    if isinstance(rec, Platform):
        return _platform(rec, lim)
    if isinstance(rec, Tip):
        return _tip(rec, lim)
    if isinstance(rec, Outcome):
        return _outcome(rec, lim)
    return f"not an input record: {type(rec).__name__}"


# ---- time: where the record sits against the stream ----------------------------------------------------
def event_time(rec: Record) -> int | None:
    """The field that moves the stream's event time (None: this record never moves it)."""
    if isinstance(rec, Transaction):
        return rec.ts
    if isinstance(rec, Account):
        return rec.opened_at
    if isinstance(rec, Listing):
        return rec.listed_at
    if isinstance(rec, Disclosure):
        return rec.period_end
    if isinstance(rec, Platform):
        return rec.updated_at
    return None


def _bounds(rec: Record, lim: Limits) -> tuple[int, int | None]:
    """(how far ahead of the stream, how far behind its partition: None = any) for the record's type."""
    if isinstance(rec, Transaction):
        return lim.money_ahead_ms, lim.money_late_ms
    if isinstance(rec, Disclosure):
        return lim.disclosure_ahead_ms, lim.disclosure_late_ms
    return lim.registry_ahead_ms, None


def _days(ms: int) -> str:
    return f"{ms / DAY_MS:.1f} days"


def check_time(rec: Record, now_ms: int, partition_ms: int | None, wall_ms: int,
               lim: Limits = DEFAULT_LIMITS) -> str | None:
    """Why the record's times do not fit the stream, or None. Content must have passed (times are ints)."""
    times: tuple[tuple[str, int | None], ...]
    if isinstance(rec, Transaction):
        times = (("ts", rec.ts),)
    elif isinstance(rec, Platform):
        times = (("updated_at", rec.updated_at), ("launched_at", rec.launched_at))
    elif isinstance(rec, Account):
        times = (("opened_at", rec.opened_at),)
    elif isinstance(rec, Listing):
        times = (("listed_at", rec.listed_at),)
    elif isinstance(rec, Disclosure):
        times = (("period_end", rec.period_end),)
    elif isinstance(rec, Outcome):
        times = (("decided_at", rec.decided_at),)
    else:
        times = (("received_at", rec.received_at),)
    for name, t in times:
        if t is None:
            continue
        if t < lim.time_floor_ms:
            return f"{name} {t} is before {lim.time_floor_ms} (1990-01-01)"
        if t > wall_ms + lim.wall_skew_ms:
            return f"{name} {t} is {_days(t - wall_ms)} ahead of the wall clock"
    t = event_time(rec)
    if t is None:
        return None
    ahead, late = _bounds(rec, lim)
    if now_ms and t > now_ms + ahead:
        return f"event time {t} is {_days(t - now_ms)} ahead of the stream ({now_ms}; at most {_days(ahead)})"
    if late is not None and partition_ms is not None and t < partition_ms - late:
        return f"late: event time {t} is {_days(partition_ms - t)} behind its partition ({partition_ms}; " \
               f"at most {_days(late)})"
    return None


def validate(rec: Record, *, now_ms: int, partition_ms: int | None, wall_ms: int,
             limits: Limits = DEFAULT_LIMITS) -> str | None:
    """Why `rec` must not touch state, or None. Pure: the caller supplies every clock."""
    if type(rec) is Transaction:  # the hot path, same rules as check_time without its dispatch
        reason = transaction_reason(rec, limits)
        if reason:
            return reason
        t = rec.ts
        if t < limits.time_floor_ms or t > wall_ms + limits.wall_skew_ms or (
                now_ms and t > now_ms + limits.money_ahead_ms) or (
                partition_ms is not None and t < partition_ms - limits.money_late_ms):
            return check_time(rec, now_ms, partition_ms, wall_ms, limits)
        return None
    return check_content(rec, limits) or check_time(rec, now_ms, partition_ms, wall_ms, limits)


@dataclass
class Gate:
    """`validate` plus the clocks it needs: each input partition's event time, and the stream's.

    The stream's event time is the newest time accepted here or the ledger's, whichever is later:
    a transaction waiting for its account has passed the door but not yet moved the ledger's clock,
    and the records behind it in its partition must not look as if they were from the future."""

    limits: Limits = DEFAULT_LIMITS
    clock: Callable[[], float] = time.time
    partitions: dict[tuple[str, int], int] = field(default_factory=dict)
    stream_ms: int = 0

    def check(self, env: Envelope, now_ms: int) -> str | None:
        """The reason `env` is refused (prefixed with what it is), or None after noting its time."""
        rec, src = env.record, env.source
        key = (src.topic, src.partition)
        part = self.partitions.get(key)
        reason = validate(rec, now_ms=max(now_ms, self.stream_ms), partition_ms=part,
                          wall_ms=int(self.clock() * 1000), limits=self.limits)
        if reason:
            return f"invalid {type(rec).__name__} {_ident(rec)}: {reason}"
        t = rec.ts if type(rec) is Transaction else event_time(rec)
        if t is not None:
            if part is None or t > part:
                self.partitions[key] = t
            if t > self.stream_ms:
                self.stream_ms = t
        return None


def _ident(rec: Record) -> str:
    for name in ("tx_id", "account_id", "listing_id", "receipt_id", "platform_id"):
        v = getattr(rec, name, None)
        if v is not None:
            return repr(v[:64]) if isinstance(v, str) else "?"
    return "?"
