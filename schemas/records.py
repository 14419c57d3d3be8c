"""Frozen Python mirrors of the input records. Amounts are fen (int), times epoch ms (int)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "PlatformKind", "Licence", "AccountRole", "HolderKind", "ListingKind", "TxType",
    "Platform", "Account", "Listing", "Transaction", "Disclosure", "Tip", "Outcome",
    "RECORD_TYPES", "Record",
]

PlatformKind = Literal["P2P_LENDING", "EQUITY_CROWDFUNDING", "INTERNET_INSURANCE", "ASSET_MANAGEMENT",
                       "THIRD_PARTY_PAYMENT", "TRADING_VENUE", "PRIVATE_FINANCE"]
Licence = Literal["LICENSED", "UNLICENSED", "SCOPE_MISMATCH"]
HolderKind = Literal["NATURAL_PERSON", "LEGAL_PERSON"]
AccountRole = Literal["INVESTOR", "BORROWER", "PLATFORM_OWN", "CUSTODY_POOL", "RISK_RESERVE",
                      "CLIENT_RESERVE", "EXTERNAL"]
ListingKind = Literal["LOAN", "PRODUCT"]
TxType = Literal["DEPOSIT", "WITHDRAWAL", "INVEST", "DISBURSE", "REPAY", "PAYOUT", "FEE", "TRANSFER", "REFUND"]

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Platform:
    platform_id: str
    name: str
    kind: str
    licence: str
    jurisdiction: str
    business_scope: str
    updated_at: int
    custodian_id: str | None = None
    background: str | None = None
    advertised_annual_yield: float | None = None
    related_parties: list[str] = field(default_factory=list)
    launched_at: int | None = None


@dataclass(frozen=True, slots=True)
class Account:
    account_id: str
    platform_id: str
    holder_id: str
    role: str
    opened_at: int
    custodian_id: str | None = None
    holder_kind: str | None = None  # HolderKind; None: the registry does not say (art. 17 caps differ by kind)


@dataclass(frozen=True, slots=True)
class Listing:
    listing_id: str
    platform_id: str
    kind: str
    amount: int
    annual_rate: float
    term_days: int
    listed_at: int
    borrower_account: str | None = None


@dataclass(frozen=True, slots=True)
class Transaction:
    tx_id: str
    custodian_id: str
    platform_id: str
    ts: int
    type: str
    from_account: str
    to_account: str
    amount: int
    currency: str = "CNY"
    listing_id: str | None = None
    interest: int | None = None
    memo: str | None = None


@dataclass(frozen=True, slots=True)
class Disclosure:
    platform_id: str
    period_end: int
    investors: int
    borrowers: int
    yield_by_term: dict[str, float] = field(default_factory=dict)
    volume: int | None = None
    outstanding: int | None = None
    avg_annual_yield: float | None = None
    avg_term_days: float | None = None
    top10_borrower_share: float | None = None
    top10_investor_share: float | None = None
    overdue_rate: float | None = None
    related_party_outstanding: int | None = None
    complaints: int | None = None


@dataclass(frozen=True, slots=True)
class Tip:
    """A public tip-off about a platform: complaint evidence, counted (its text stays in the service)."""

    receipt_id: str
    platform_id: str
    received_at: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a platform (closed, run away, found normal...): a label the scoring learns from, never
    evidence against the platform it names."""

    platform_id: str
    status: str  # OutcomeStatus
    decided_at: int
    source: str
    note: str | None = None


Record = Platform | Account | Listing | Transaction | Disclosure | Tip | Outcome

RECORD_TYPES: dict[str, type] = {
    "Platform": Platform, "Account": Account, "Listing": Listing,
    "Transaction": Transaction, "Disclosure": Disclosure, "Tip": Tip, "Outcome": Outcome,
}

