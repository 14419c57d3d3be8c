"""A synthetic custodian world: lawful platforms of every kind and platforms running each scheme.

Every platform runs the same money engine; a scheme changes how that platform's money moves
from its start day on, as strongly as its `intensity` says (from blatant to barely there), and
lawful platforms show the variety real ones do (LAWFUL_VARIANTS): near-misses of every rule
(matched escrow pools, borrower fees deducted from escrow or advanced and reimbursed, steep but
disclosed fees, honest high yields backed by high borrower rates, fast growth, reserves at two
banks, early, late and partial repayments, defaults borne by investors or covered by a disclosed
risk reserve), the market's seasons (the Spring Festival trough, quarter-end and Double 11
peaks) and honest wind-downs. Schemes share every surface feature that is not the scheme itself,
so that no single number separates them. Complaints come to lawful platforms too (after a
default, around the holidays) and come late and noisily to schemes. Disclosures are as real ones
are: some platforms leave fields empty, round, repeat a stale month, skip one, or keep an
irregular cadence. Platforms without bank custody run the engine too, but only their registry
entry and their disclosures are written: that is all a supervisor sees of them.

The simulator knows nothing about the detectors; labels.json is the ground truth, and
`World.outcomes` says what became of every platform (Outcome records, written on request).
"""
from __future__ import annotations

import datetime
import json
import math
import random
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Collection

from schemas.records import DAY_MS

__all__ = ["SCHEMES", "SCHEME_DETECTORS", "simulate", "write_world", "World"]

T0 = 1_451_606_400_000  # 2016-01-01T00:00:00Z: the rectification year
HOUR = 3_600_000
YUAN = 100  # fen per yuan

SCHEMES = ("fund_pool", "misappropriation", "self_financing", "ponzi", "reserve_misuse")
# what a supervisor expects the detectors to call each scheme
SCHEME_DETECTORS: dict[str, tuple[str, ...]] = {
    "fund_pool": ("fund_pool", "maturity_mismatch"),
    "misappropriation": ("misappropriation", "custody_shortfall"),
    # nominee_borrowing and cross_platform_insider are the visible half of an undeclared scheme (a collector
    # with no money seen returning; insiders of a platform outside custody); borrowing_cap is not: any scheme breaks it
    "self_financing": ("self_financing", "pass_through", "nominee_borrowing", "cross_platform_insider"),
    "ponzi": ("ponzi_payout", "excess_yield", "subsidy"),
    "reserve_misuse": ("reserve_misuse", "cross_bank_clearing"),
}

KIND_WEIGHTS = {
    "P2P_LENDING": 0.42, "EQUITY_CROWDFUNDING": 0.08, "INTERNET_INSURANCE": 0.05,
    "ASSET_MANAGEMENT": 0.13, "THIRD_PARTY_PAYMENT": 0.14, "TRADING_VENUE": 0.06, "PRIVATE_FINANCE": 0.12,
}
JURISDICTIONS = ["320703", "320706", "320707", "320722", "320723", "320724",
                 "652301", "652302", "652323", "652324", "652325", "652327", "652328"]
CITY = {"3207": "连云港", "6523": "昌吉"}
CUSTODIANS = [f"CB{i:02d}" for i in range(1, 9)]
NAME_WORDS = ["鑫盛", "汇通", "聚财", "融信", "恒泰", "金桥", "富民", "瑞丰", "中诚", "安盈", "宏远", "天润",
              "华融", "益民", "德信", "嘉禾", "国泰", "盛世", "九州", "通达", "百福", "银河", "和润", "新元"]
KIND_NAME = {
    "P2P_LENDING": ("网络借贷信息中介有限公司", "网络借贷信息中介服务；P2P网贷平台运营"),
    "EQUITY_CROWDFUNDING": ("股权众筹服务有限公司", "股权众筹融资服务；创业投资咨询"),
    "INTERNET_INSURANCE": ("保险代理有限公司", "互联网保险代理；保险咨询"),
    "ASSET_MANAGEMENT": ("资产管理有限公司", "资产管理；投资管理；财富管理；理财咨询"),
    "THIRD_PARTY_PAYMENT": ("支付科技有限公司", "网络支付；预付卡受理；支付结算技术服务"),
    "TRADING_VENUE": ("交易中心有限公司", "金融资产交易；大宗商品交易中心服务"),
    "PRIVATE_FINANCE": ("投资咨询有限公司", "投资咨询；民间借贷信息服务；基金管理"),
}
TERMS = (30, 90, 180, 365)
# what lawful platforms do that a rule could mistake for a scheme, as labels.json names it per platform
LAWFUL_VARIANTS: dict[str, str] = {
    "escrow": "investor money passes through an escrow pool, one listing at a time",
    "matched_plans": "products matched one-to-one to a loan of the same term",
    "fee_at_source": "the borrower's fee is deducted from the escrowed loan money at disbursement",
    "fee_from_escrow_reimbursed": "the borrower's fee is advanced from the escrow and reimbursed by the borrower days later",
    "steep_disclosed_fees": "borrower fees of 5-8 %, disclosed",
    "honest_high_yield": "investor yields of 13-18 % backed by borrower rates of 20-24 %",
    "fast_growth": "investors arrive three times as fast",
    "large_borrowers": "legal-person borrowers with larger loans",
    "two_reserve_banks": "a payment institution with client reserves at two banks",
    "reserve_rebalancing": "it sweeps what its cooperating bank's reserve collected to its custodian bank's every few days",
    "irregular_repayments": "borrowers often repay early, late (with penalty interest) or in parts",
    "investor_borne_defaults": "a higher default rate whose losses investors bear, with partial recoveries",
    "risk_reserve_payouts": "a disclosed risk reserve, funded by borrower fees and the platform, pays investors on defaults",
    "seasonal": "volume that follows the market's seasons strongly",
    "honest_wind_down": "stops new business, repays investors; outstanding falls to zero; disclosures go on",
    "wind_down_buyback": "winding down, its shareholders buy the remaining claims at par",
    "sloppy_disclosures": "disclosures with empty fields, rounding, stale or skipped months, irregular cadence",
    "complaint_burst": "a burst of complaints after a default it suffered",
    "investor_own_fees": "investors pay a 2-yuan withdrawal fee and some a 100-200 yuan membership, naming no loan",
    "entrusted_payment": "half its borrowers' loans paid whole to the seller they buy from (受托支付: a car dealer, a "
                         "supplier), a few sellers for many borrowers",
}
# disclosure fields a platform may leave empty
OPTIONAL_FIELDS = ("volume", "outstanding", "avg_annual_yield", "avg_term_days", "top10_borrower_share",
                   "top10_investor_share", "overdue_rate", "related_party_outstanding", "complaints")
MONEY_FIELDS = ("volume", "outstanding", "related_party_outstanding")
# who records an outcome that is not the police's or the press's: the kind's lead department (DOMAIN.md)
SOURCES = {"P2P_LENDING": "银监分局", "EQUITY_CROWDFUNDING": "金融办", "INTERNET_INSURANCE": "保险行业协会",
           "ASSET_MANAGEMENT": "金融办", "THIRD_PARTY_PAYMENT": "人民银行中心支行", "TRADING_VENUE": "金融办",
           "PRIVATE_FINANCE": "维稳办"}
OUTCOME_STATUSES = ("NORMAL", "RECTIFYING", "SUSPENDED", "CLOSED", "WITHDRAWAL_DIFFICULTY", "POLICE_INVESTIGATION",
                    "RUN_AWAY")
# how a scheme ends when it is found out, by scheme
SCHEME_ENDS: dict[str, tuple[str, ...]] = {
    "fund_pool": ("WITHDRAWAL_DIFFICULTY", "POLICE_INVESTIGATION", "SUSPENDED"),
    "misappropriation": ("RUN_AWAY", "POLICE_INVESTIGATION", "WITHDRAWAL_DIFFICULTY"),
    "self_financing": ("POLICE_INVESTIGATION", "WITHDRAWAL_DIFFICULTY", "SUSPENDED"),
    "ponzi": ("WITHDRAWAL_DIFFICULTY", "RUN_AWAY", "POLICE_INVESTIGATION"),
    "reserve_misuse": ("SUSPENDED", "POLICE_INVESTIGATION"),
}
START_DATE = datetime.date(2016, 1, 1)  # day 0 (T0)
SPRING_FESTIVAL = {2015: (2, 19), 2016: (2, 8), 2017: (1, 28), 2018: (2, 16), 2019: (2, 5), 2020: (1, 25),
                   2021: (2, 12)}
SF_FLOOR_DAYS = 21  # a self-financing scheme under way lends to its own at least this often
PENALTY_PER_DAY = 0.0005  # late-payment interest (罚息) on the overdue amount


@lru_cache(maxsize=None)
def market_season(day: int) -> tuple[float, float, float]:
    """The whole market's calendar on `day` as (volume, withdrawals, complaints) shapes, 0 on an ordinary day.

    Before the Spring Festival people take money home (withdrawals rise, volume falls), the
    holiday week is dead and business restarts slowly; the last week of each quarter and
    Double 11 (and 618) are peaks. A platform scales the shapes by its own amplitude."""
    date = START_DATE + datetime.timedelta(days=day)
    vol = wd = comp = 0.0
    for y in (date.year - 1, date.year, date.year + 1):
        if y not in SPRING_FESTIVAL:
            continue
        m, d = SPRING_FESTIVAL[y]
        k = (date - datetime.date(y, m, d)).days
        if -14 <= k < 0:
            vol -= 0.25 + 0.35 * (k + 14) / 14
            wd += 0.9 * (k + 14) / 14
        elif 0 <= k <= 6:
            vol -= 0.8
            wd -= 0.5
            comp += 0.5  # service desks closed, withdrawals slow
        elif 7 <= k <= 20:
            vol -= 0.5 * (20 - k) / 14
            comp += 0.3
    if date.month in (3, 6, 9, 12):
        last = ((date.replace(day=1) + datetime.timedelta(days=32)).replace(day=1) - datetime.timedelta(days=1)).day
        if date.day > last - 7:
            vol += 0.35 + 0.1 * (date.day - (last - 7))
            wd += 0.3  # banks pull deposits back at quarter end
    if date.month == 11 and 8 <= date.day <= 12:
        vol += 1.5 if date.day == 11 else 0.8
        comp += 0.2
    if date.month == 6 and 16 <= date.day <= 18:
        vol += 0.4
    return vol, wd, comp


def _unit(*key: object) -> float:
    """A number in [0, 1) fixed by `key` (same in every process, unlike hash())."""
    return zlib.crc32("|".join(map(str, key)).encode()) / 2**32


NATURAL, LEGAL = "NATURAL_PERSON", "LEGAL_PERSON"
# art. 17 of the 2016 P2P lending measures: what one borrower may owe (one platform, all platforms), fen.
# Lawful platforms keep to it; schemes need not.
BORROW_CAPS = {NATURAL: (200_000 * YUAN, 1_000_000 * YUAN), LEGAL: (1_000_000 * YUAN, 5_000_000 * YUAN)}
UNDECLARED = ("nominees", "cross_platform")  # self-financing variants whose controllers declare nothing
SCHEME_KINDS = {
    "fund_pool": ("P2P_LENDING", "ASSET_MANAGEMENT", "PRIVATE_FINANCE", "TRADING_VENUE"),
    "misappropriation": ("P2P_LENDING", "ASSET_MANAGEMENT", "EQUITY_CROWDFUNDING", "PRIVATE_FINANCE",
                         "INTERNET_INSURANCE"),
    "self_financing": ("P2P_LENDING", "PRIVATE_FINANCE", "EQUITY_CROWDFUNDING", "TRADING_VENUE"),
    "ponzi": ("P2P_LENDING", "ASSET_MANAGEMENT", "PRIVATE_FINANCE"),
    "reserve_misuse": ("THIRD_PARTY_PAYMENT",),
}


@dataclass
class Loan:
    listing_id: str
    borrower: str  # account id
    amount: int
    rate: float
    term: int
    start_day: int
    shares: dict[str, int] = field(default_factory=dict)  # investor account (or pool) -> principal
    defaulted: bool = False
    via_pool: bool = False
    product_id: str | None = None
    returned: int = 0  # what came back to the share holders (installments, recoveries, reserve cover)
    closed_day: int | None = None  # fully repaid (early or at maturity) or written off
    recover_to: str | None = None  # after a default: who receives recoveries (the risk reserve once it paid)
    late_parts: int = 0  # installments still to come late
    fee_taken: bool = False  # the fee was deducted from the escrowed loan money at disbursement


@dataclass
class Product:
    listing_id: str
    rate: float
    term: int
    start_day: int
    holdings: dict[str, int] = field(default_factory=dict)
    paid: bool = False
    loan: Loan | None = None  # a matched plan's one loan: the product pays what that loan returns


@dataclass
class World:
    """What simulate() made, kept in memory for tests; files are written from it."""

    platforms: list[dict[str, Any]] = field(default_factory=list)
    accounts: list[dict[str, Any]] = field(default_factory=list)
    listings: list[dict[str, Any]] = field(default_factory=list)
    transactions: list[dict[str, Any]] = field(default_factory=list)
    disclosures: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[dict[str, Any]] = field(default_factory=list)  # what became of platforms: written only on request
    labels: dict[str, Any] = field(default_factory=dict)
    holders: Holders = field(default_factory=lambda: Holders())


@dataclass
class Holders:
    """Borrowers by holder across the world: kind, loans on every platform (the simulator's truth), and natural
    persons who borrow on more than one platform. Lawful platforms ask it how much a borrower may still owe."""

    kinds: dict[str, str] = field(default_factory=dict)
    unregistered: set[str] = field(default_factory=set)  # kind known here, left null in the bank's registry
    loans: dict[str, list[tuple[str, Loan]]] = field(default_factory=dict)
    roaming: list[str] = field(default_factory=list)

    def on_record(self, holder: str) -> str | None:
        return None if holder in self.unregistered else self.kinds.get(holder)

    def owed(self, holder: str, day: int, platform: str | None = None) -> int:
        """Principal outstanding: loans not yet due (repaid whole at maturity) and loans in default."""
        return sum(l.amount for p, l in self.loans.get(holder, ())
                   if (platform is None or p == platform) and (l.defaulted or day - l.start_day <= l.term))

    def room(self, holder: str, platform: str, day: int) -> int:
        one, every = BORROW_CAPS[self.kinds.get(holder, LEGAL)]
        return max(0, min(one - self.owed(holder, day, platform), every - self.owed(holder, day)))


class _Platform:
    """One platform's books and behaviour. Emits records into the world only if in custody."""

    def __init__(self, world: World, rng: random.Random, idx: int, kind: str, scheme: str | None,
                 start_day: int, days: int) -> None:
        self.w, self.rng, self.kind, self.scheme, self.start_day, self.days = world, rng, kind, scheme, start_day, days
        self.pid = f"P{idx:04d}"
        self.seq = 0
        self.custody = rng.random() < (0.85 if kind != "THIRD_PARTY_PAYMENT" else 0.95)
        self.custodian = rng.choice(CUSTODIANS) if self.custody else None
        self.juris = rng.choice(JURISDICTIONS)
        self.size = math.exp(rng.uniform(math.log(0.4), math.log(4.0)))
        self.payment = kind == "THIRD_PARTY_PAYMENT"
        self.traits: list[str] = []
        self.variant: str | None = None
        self.controller = f"H-{self.pid}-CTRL"
        self.affiliates = [f"H-{self.pid}-AFF{i}" for i in range(rng.randint(1, 3))]
        self.balance: dict[str, int] = {}
        self.externals: set[str] = set()
        self.n_investors = 0
        self.investors: list[str] = []
        self.ext: dict[str, str] = {}  # account -> its holder's external card
        self.borrowers: list[str] = []
        self.holder_of: dict[str, str] = {}  # borrower account -> holder
        self.partner: _Platform | None = None  # cross_platform: the platform whose controllers borrow here
        self.collector: str | None = None  # nominees: the undeclared controller's account that gathers the loans
        self.sf_due: list[tuple[int, int]] = []  # nominees: (day, amount) the collector sends back
        self.intensity: float = 0.0  # 1 blatant ... 0 barely there (schemes; set in _setup)
        self.sf_share, self.sf_big, self.sf_accounts = 0.5, True, False
        self.sf_handover, self.sf_lag, self.sf_return = (0.85, 0.98), 0, 0.0
        self.sf_last = -1  # the day of the last loan to the scheme's own (self_financing)
        self.related_borrowers: set[str] = set()
        self.loans: list[Loan] = []
        self.products: list[Product] = []
        self.complaints = 0.0  # complaint pressure: missed payments and defaults add to it, it fades month by month
        self.month_volume = 0
        self.missed = 0
        self.pending: list[tuple[int, Loan, str, int, int]] = []  # (due day, loan, payee, amount, interest) paid late
        self.recoveries: list[tuple[int, Loan, int]] = []  # (day, defaulted loan, amount the borrower will pay back)
        self.overdue_events: list[tuple[int, int]] = []  # (day, principal) defaulted or missed
        self.stop_day: int | None = None  # no new business from this day (wind-down, suspension, collapse)
        self.halt_day: int | None = None  # no payouts or withdrawals from this day (withdrawal difficulty)
        self.freeze_day: int | None = None  # no money moves and no disclosures from this day (police, run away)
        self.wind_down_day: int | None = None
        self.buyback_day: int | None = None
        self.closed_day: int | None = None
        self.outcome_day = days - 1
        self.outcome_status = "NORMAL"
        self.outcome_note: str | None = None
        self.next_disclosure = 29
        self.last_disclosure: dict[str, Any] | None = None
        self.heat = 0.0  # a scheme's own complaint pressure once investors start to notice
        self.complaint_onset = days + 1
        self.last_published_day = -1
        self.advertised = False
        self.matched: dict[str, Product] = {}  # loan listing -> the matched plan's product
        self._setup()

    # ---- registry -------------------------------------------------------------------------
    def _setup(self) -> None:
        r, kind = self.rng, self.kind
        # how strongly a scheme runs, from barely there (0.05) to blatant (1): how often it acts and how much it moves
        self.intensity = round(r.uniform(0.05, 1.0), 3) if self.scheme else 0.0
        self.force = 0.25 + 0.75 * self.intensity
        self.fee = r.uniform(0.005, 0.03)
        self.borrower_rate = (r.uniform(0.07, 0.13), r.uniform(0.13, 0.19))
        self.yield_spread = r.uniform(0.02, 0.05)
        self.escrow = r.random() < 0.5
        self.matched_plans = (kind in ("ASSET_MANAGEMENT", "P2P_LENDING", "PRIVATE_FINANCE")) and r.random() < 0.35
        self.growth = r.uniform(0.3, 1.2)
        self.default_p = r.uniform(0.0, 0.04)
        self.term_mix = r.sample(TERMS, r.randint(1, 3))
        self.reserve_banks = 1
        # lawful look-alikes: a surface feature of a scheme, honestly run
        if self.scheme is None and not self.payment:
            if r.random() < 0.2:
                self.traits.append("honest_high_yield")
                self.borrower_rate = (0.20, 0.24)
                self.yield_spread = r.uniform(0.04, 0.07)
                self.default_p = r.uniform(0.03, 0.07)
            if r.random() < 0.15:
                self.traits.append("steep_disclosed_fees")
                self.fee = r.uniform(0.05, 0.08)
            if r.random() < 0.15:
                self.traits.append("fast_growth")
                self.growth *= 3
            if r.random() < 0.2:
                self.traits.append("large_borrowers")
        if self.matched_plans:
            self.traits.append("matched_plans")
        if self.escrow and not self.payment:
            self.traits.append("escrow")
        if self.payment:
            self.fee = r.uniform(0.003, 0.006)
            if r.random() < 0.3:
                self.reserve_banks = 2
                self.traits.append("two_reserve_banks")
        if self.scheme == "fund_pool":
            self.variant = r.choice(["custody_pool", "own_account"])
            self.escrow = True
        elif self.scheme == "self_financing":
            self.variant = r.choices(["declared", "hidden", "nominees", "cross_platform"], [1, 1, 2, 2])[0]
            self._undeclared_setup()
        elif self.scheme == "ponzi":
            self.growth *= 1 + 1.5 * self.intensity
        elif self.scheme == "reserve_misuse":
            self.variant = r.choice(["misuse", "clearing", "both"])
            if self.variant != "misuse":
                self.reserve_banks = r.randint(3, 4)
        elif self.scheme == "misappropriation":
            self.variant = r.choice(["pool_to_own", "investor_fees"])
        city = CITY[self.juris[:4]]
        suffix, scope = KIND_NAME[kind]
        if r.random() < 0.15:
            suffix, scope = "信息科技有限公司", "计算机软件开发；信息技术咨询"  # no keyword
        self.name = f"{city}{r.choice(NAME_WORDS)}{r.choice(NAME_WORDS)}{suffix}"
        if self.scheme is None:
            licence = r.choices(["LICENSED", "UNLICENSED", "SCOPE_MISMATCH"], [0.7, 0.22, 0.08])[0]
        else:
            licence = r.choices(["LICENSED", "UNLICENSED", "SCOPE_MISMATCH"], [0.45, 0.4, 0.15])[0]
        self.licence = licence
        background = r.choice(["STATE_OWNED", "LISTED", "VC_BACKED", "BANK", "PRIVATE", "PRIVATE", None])
        rel = [self.controller] + self.affiliates
        self.base_yield = max(0.04, (self.borrower_rate[0] + self.borrower_rate[1]) / 2 - self.yield_spread)
        self.ponzi_yield = self.base_yield + 0.03 + self.intensity * max(0.0, r.uniform(0.18, 0.32) - self.base_yield - 0.03)
        self.launched = -r.randint(30, 700)
        self.w.platforms.append(dict(
            platform_id=self.pid, name=self.name, kind=kind, licence=licence, jurisdiction=self.juris,
            custodian_id=self.custodian, business_scope=scope, background=background,
            advertised_annual_yield=round(self.base_yield if not self.payment else 0.0, 4) or None,
            related_parties=rel, launched_at=T0 + self.launched * DAY_MS, updated_at=T0))
        # accounts the platform itself holds
        self.own = self._account(f"H-{self.pid}", "PLATFORM_OWN", -1)
        self.pool = self._account(f"H-{self.pid}", "CUSTODY_POOL", -1) if (self.escrow or self.matched_plans) else None
        self.reserves = [self._account(f"H-{self.pid}", "CLIENT_RESERVE", -1, custodian=CUSTODIANS[(CUSTODIANS.index(self.custodian or "CB01") + i) % 8])
                         for i in range(self.reserve_banks)] if self.payment else []
        self.risk_reserve = self._account(f"H-{self.pid}", "RISK_RESERVE", -1) if (not self.payment and self.rng.random() < 0.4) else None
        self.ctrl_card = self._account(self.controller, "EXTERNAL", -1)
        self.aff_cards = [self._account(a, "EXTERNAL", -1) for a in self.affiliates]
        self.merchants = [self._account(f"H-{self.pid}-M{i}", "EXTERNAL", -1) for i in range(max(3, int(8 * self.size)))] if self.payment else []
        self._setup_variants()

    def _setup_variants(self) -> None:
        """The lawful variety a platform shows (schemes show it too: none of it is the scheme) and how it ends."""
        r, days = self.rng, self.days
        lending = not self.payment
        # investors' own fees naming no loan (withdrawal, membership), drawn from a generator of their own so that
        # the variant, added later, leaves every other draw of the world as it was
        side = random.Random(zlib.crc32(f"{self.pid}|{self.size!r}|own-fees".encode()))
        self.own_fees: random.Random | None = side if lending and side.random() < 0.2 else None
        self.members: set[str] = set()
        if self.own_fees is not None:
            self.traits.append("investor_own_fees")
        # entrusted payment (受托支付): loans paid on to the seller the borrower buys from, a few sellers (car dealers,
        # suppliers) for many borrowers; its own generator, as above
        side = random.Random(zlib.crc32(f"{self.pid}|{self.size!r}|entrusted".encode()))
        self.entrusted: random.Random | None = side if lending and side.random() < 0.15 else None
        self.sellers: list[str] = []
        if self.entrusted is not None:
            self.traits.append("entrusted_payment")
        # every borrower base repays a little irregularly; some very
        self.p_early, self.p_late, self.p_partial = 0.02, 0.03, 0.01
        if lending and r.random() < 0.25:
            self.traits.append("irregular_repayments")
            self.p_early, self.p_late, self.p_partial = r.uniform(0.06, 0.12), r.uniform(0.08, 0.16), r.uniform(0.04, 0.08)
        self.recovery_p = r.uniform(0.2, 0.6)
        self.reserve_cut = 0.0
        if lending and self.risk_reserve is not None:
            self.traits.append("risk_reserve_payouts")
            self.reserve_cut = r.uniform(0.005, 0.02)  # of each loan, charged to the borrower into the reserve
            self.default_p = max(self.default_p, r.uniform(0.02, 0.06))
        elif lending and r.random() < 0.2:
            self.traits.append("investor_borne_defaults")
            self.default_p = r.uniform(0.05, 0.10)
        # the borrower's fee through the escrow: deducted from the loan money, or advanced and reimbursed
        self.fee_mode = "borrower"
        if lending and self.pool is not None:
            x = r.random()
            if x < 0.25:
                self.fee_mode = "at_source"
                self.traits.append("fee_at_source")
            elif x < 0.65 and self.matched_plans:
                self.fee_mode = "advanced"
                self.traits.append("fee_from_escrow_reimbursed")
        # the market's seasons, felt more by some
        self.season_amp = r.uniform(0.15, 0.4) if lending else r.uniform(0.3, 0.6)
        if r.random() < 0.25:
            self.season_amp = r.uniform(0.7, 1.0) if lending else r.uniform(0.9, 1.3)
            self.traits.append("seasonal")
        # payment institutions: some merchants settle weekly (a float); two reserve banks are rebalanced
        self.weekly_merchants = set(r.sample(self.merchants, len(self.merchants) // 3)) if self.payment else set()
        self.float: dict[tuple[str, str], int] = {}
        self.rebalance_every = 0
        if self.payment and len(self.reserves) == 2 and r.random() < 0.6:
            self.rebalance_every = r.randint(3, 7)
            self.traits.append("reserve_rebalancing")
        # disclosure habits: platforms outside custody are sloppier, schemes and lawful alike
        self.sloppy = r.random() < (0.55 if not self.custody else 0.2)
        self.null_p, self.stale_p, self.skip_p = 0.01, 0.0, 0.0
        self.never: set[str] = set()
        self.round_money, self.yield_step = 0, 0.0001
        if self.sloppy:
            self.traits.append("sloppy_disclosures")
            self.null_p, self.stale_p, self.skip_p = r.uniform(0.05, 0.25), r.uniform(0.05, 0.15), r.uniform(0.03, 0.12)
            self.never = set(r.sample(OPTIONAL_FIELDS, r.randint(0, 2)))
            self.round_money = r.choice((0, 1_000_000, 10_000_000))  # exact, to 1万元, to 10万元
            self.yield_step = r.choice((0.001, 0.005))
            self.next_disclosure = 29 + r.randint(-3, 8)
        # custody began with the stream, but most platforms ran before it: their disclosures count the investors
        # and borrowers they already had (so an established platform does not look as if it had just begun)
        age = -self.launched
        self.legacy_investors = int((self.growth if lending else 1.0) * self.size * age * r.uniform(0.3, 0.8))
        self.legacy_borrowers = int(0.6 * self.size * age * r.uniform(0.2, 0.5)) if lending else 0
        # how it ends
        if self.scheme is not None:
            found_out = self.intensity >= 0.3 or r.random() < self.intensity / 0.3
            late = max(self.start_day + 20, int(0.85 * days))  # in the last stretch: the windows still see the scheme
            if found_out:
                self.outcome_status = r.choice(SCHEME_ENDS[self.scheme])
                self.outcome_day = r.randint(late, days - 1) if late < days - 1 else days - 1
            else:  # barely there: nobody has noticed, or a routine inspection asked for rectification
                self.outcome_status = r.choice(("NORMAL", "RECTIFYING"))
                self.outcome_day = r.randint(late, days - 1) if self.outcome_status == "RECTIFYING" and late < days - 1 else days - 1
            # investors notice late: some time between the start and the end, later for subtler schemes
            span = max(1, self.outcome_day - self.start_day)
            self.complaint_onset = self.start_day + int(span * r.uniform(0.3, 0.8) * (1.6 - self.intensity))
        elif lending and r.random() < 0.08:
            self.wind_down_day = self.stop_day = int(days * r.uniform(0.35, 0.7))
            self.traits.append("honest_wind_down")
            self.outcome_status, self.outcome_note = "CLOSED", "良性退出：停止新增业务，存量借贷到期清偿，信息披露持续至清退完毕。"
            if r.random() < 0.5 and self.wind_down_day + 30 < days - 1:
                self.buyback_day = self.wind_down_day + r.randint(30, min(80, days - 2 - self.wind_down_day))
                self.traits.append("wind_down_buyback")
        elif self.sloppy and r.random() < 0.4:
            self.outcome_status = "RECTIFYING"
            self.outcome_day = r.randint(days // 2, days - 1) if days > 2 else days - 1
            self.outcome_note = "信息披露不完整、不及时，限期整改。"

    def _account(self, holder: str, role: str, day: int, custodian: str | None = None) -> str:
        self.seq += 1
        aid = f"{self.pid}-A{self.seq:05d}"
        if role == "EXTERNAL":
            self.externals.add(aid)
        else:
            self.balance[aid] = 0
        if self.custody:
            self.w.accounts.append(dict(account_id=aid, platform_id=self.pid, holder_id=holder, role=role,
                                        custodian_id=None if role == "EXTERNAL" else (custodian or self.custodian),
                                        opened_at=T0 + day * DAY_MS + 8 * HOUR,
                                        holder_kind=self.w.holders.on_record(holder)))
        return aid

    def _listing(self, kind: str, amount: int, rate: float, term: int, day: int, borrower: str | None) -> str:
        self.seq += 1
        lid = f"{self.pid}-L{self.seq:05d}"
        if self.custody:
            self.w.listings.append(dict(listing_id=lid, platform_id=self.pid, kind=kind, borrower_account=borrower,
                                        amount=amount, annual_rate=round(rate, 4), term_days=term,
                                        listed_at=T0 + day * DAY_MS + 9 * HOUR))
        return lid

    def tx(self, day: int, hour: float, type_: str, src: str, dst: str, amount: int, listing: str | None = None,
           interest: int | None = None, memo: str | None = None, rng: random.Random | None = None) -> bool:
        """Move money if the source holds it (externals are outside the books); emit it if in custody. `rng`: a
        variant's own generator (one added later leaves every other platform's draws as they were)."""
        amount = int(amount)
        if amount <= 0 or (src not in self.externals and self.balance[src] < amount):
            return False
        if src not in self.externals:
            self.balance[src] -= amount
        if dst not in self.externals:
            self.balance[dst] += amount
        if self.custody:
            self.seq += 1
            ts = T0 + day * DAY_MS + int(hour * HOUR) + (rng or self.rng).randint(0, 600_000)
            self.w.transactions.append(dict(
                tx_id=f"{self.pid}-T{self.seq:07d}", custodian_id=self.custodian, platform_id=self.pid, ts=ts,
                type=type_, from_account=src, to_account=dst, amount=amount, currency="CNY",
                listing_id=listing, interest=interest, memo=memo))
        return True

    def started(self, day: int) -> bool:
        return self.scheme is not None and day >= self.start_day

    def active(self, day: int) -> bool:
        """The scheme acts today: from its start, on a share of days that grows with its intensity."""
        return (self.started(day) and _unit(self.pid, day) < min(1.0, 0.2 + self.intensity)
                and not (self.outcome_status == "RECTIFYING" and day >= self.outcome_day)
                and (self.stop_day is None or day < self.stop_day))

    def _stopped(self, day: int) -> bool:
        return self.stop_day is not None and day >= self.stop_day

    def _halted(self, day: int) -> bool:
        return self.halt_day is not None and day >= self.halt_day

    def _season(self, day: int) -> tuple[float, float]:
        """This platform's (volume, withdrawal) factors today: the market's calendar at its own amplitude."""
        vol, wd, _ = market_season(day)
        return max(0.05, 1 + self.season_amp * vol), max(0.05, 1 + self.season_amp * wd)

    # ---- people ---------------------------------------------------------------------------
    def _new_investor(self, day: int) -> str:
        self.n_investors += 1
        holder = f"H-{self.pid}-I{self.n_investors:05d}"
        inv = self._account(holder, "INVESTOR", day)
        self.ext[inv] = self._account(holder, "EXTERNAL", day)
        self.investors.append(inv)
        return inv

    def _new_borrower(self, day: int, related: bool = False, kind: str | None = None, holder: str | None = None) -> str:
        n = len(self.borrowers) + 1
        reg = self.w.holders
        if holder is not None:
            pass
        elif related and self.variant == "declared":
            holder = self.rng.choice(self.affiliates)
            kind = LEGAL
        elif related and self.variant == "nominees":
            holder, kind = self._nominee(n)
        elif related and self.variant == "cross_platform" and self.partner is not None:
            # the partner platform's controller or affiliates (declared there, not here) borrow here
            holder = self.rng.choice([self.partner.controller] + self.partner.affiliates)
            kind = NATURAL if holder == self.partner.controller else LEGAL
        elif related:
            holder = f"H-{self.pid}-SHELL{n:03d}"
            kind = LEGAL
        else:
            holder = f"H-{self.pid}-B{n:04d}"
        if holder not in reg.kinds:
            reg.kinds[holder] = kind or NATURAL
            if self.rng.random() < 0.1:
                reg.unregistered.add(holder)  # the bank's registry leaves the kind null
        b = self._account(holder, "BORROWER", day)
        self.ext[b] = self._account(holder, "EXTERNAL", day)
        self.borrowers.append(b)
        self.holder_of[b] = holder
        if related:
            self.related_borrowers.add(b)
        return b

    def _lawful_borrower(self, day: int, amount: int, clamp: bool = True) -> tuple[str, int]:
        """A borrower that may owe `amount` more within art. 17's caps (an earlier one, a natural person who also
        borrows on other platforms, or a new one; a legal person for large loans), and the amount, cut to the
        caps if `clamp`. Now and then a company opens a second borrower account (a second project)."""
        r, reg = self.rng, self.w.holders
        pool = [b for b in self.borrowers if b not in self.related_borrowers]
        if pool and r.random() < 0.4:
            b = r.choice(pool)
            h = self.holder_of[b]
            if reg.room(h, self.pid, day) >= amount:
                if reg.kinds.get(h) == LEGAL and r.random() < 0.05:
                    b = self._new_borrower(day, holder=h)
                return b, amount
        big = "large_borrowers" in self.traits
        kind = LEGAL if amount > BORROW_CAPS[NATURAL][0] or r.random() < (0.7 if big else 0.1) else NATURAL
        holder = None
        if kind == NATURAL and r.random() < 0.15:
            here = set(self.holder_of.values())
            fits = [h for h in reg.roaming if h not in here and reg.room(h, self.pid, day) >= amount]
            if fits and r.random() < 0.7:
                holder = r.choice(fits)
            else:
                holder = f"H-R{len(reg.roaming) + 1:05d}"
                reg.roaming.append(holder)
        b = self._new_borrower(day, kind=kind, holder=holder)
        return b, (min(amount, reg.room(self.holder_of[b], self.pid, day)) if clamp else amount)

    def _own_fees(self, day: int, inv: str) -> None:
        """A withdrawal's 2-yuan fee to the platform, and for some investors a year's membership, naming no loan."""
        side = self.own_fees
        assert side is not None
        if inv not in self.members and side.random() < 0.3:
            self.members.add(inv)
            self.tx(day, 16.8, "FEE", inv, self.own, side.randint(100, 200) * 100, memo="会员费", rng=side)
        self.tx(day, 16.9, "FEE", inv, self.own, 200, memo="提现手续费", rng=side)

    def deposit(self, day: int, inv: str, amount: int) -> None:
        self.tx(day, 9 + self.rng.random(), "DEPOSIT", self.ext[inv], inv, amount)

    def external_in(self, day: int, hour: float, card: str, acct: str, amount: int) -> None:
        self.tx(day, hour, "DEPOSIT", card, acct, amount)

    def external_out(self, day: int, hour: float, acct: str, card: str, amount: int, type_: str = "WITHDRAWAL",
                     memo: str | None = None) -> None:
        self.tx(day, hour, type_, acct, card, min(amount, self.balance[acct]), memo=memo)

    # ---- one day ----------------------------------------------------------------------------
    def step(self, day: int) -> None:
        if day == self.outcome_day:
            self._decided(day)
        if self.freeze_day is not None and day >= self.freeze_day:
            return
        if self.payment:
            self._payment_day(day)
        else:
            self._lending_day(day)
        if day >= self.next_disclosure:
            self._disclose(day)

    def _decided(self, day: int) -> None:
        """What the outcome does to the platform from the day it is decided."""
        s = self.outcome_status
        if s == "WITHDRAWAL_DIFFICULTY":
            self.stop_day = self.halt_day = day
            self.complaints += 0.05 * len(self.investors)
        elif s == "SUSPENDED":
            self.stop_day = day
            self.complaints += 0.01 * len(self.investors)
        elif s == "POLICE_INVESTIGATION":
            self.freeze_day = day  # the bank freezes the accounts
        elif s == "RUN_AWAY":
            for acct in [self.own, self.pool, *self.reserves, self.risk_reserve]:
                if acct is not None and self.balance[acct] > 0:
                    self.external_out(day, 20, acct, self.ctrl_card, self.balance[acct], type_="TRANSFER", memo="往来款")
            self.freeze_day = day + 1

    def _lending_day(self, day: int) -> None:
        r = self.rng
        vol, wd = self._season(day)
        if not self._stopped(day):
            ponzi = self.started(day) and self.scheme == "ponzi"
            growth = self.growth * (1 + (0.04 * self.intensity * (day - self.start_day) if ponzi else 0.0))
            for _ in range(self._poisson(growth * self.size * vol)):
                inv = self._new_investor(day)
                self.deposit(day, inv, self._amount(30_000))
            for inv in r.sample(self.investors, min(len(self.investors), self._poisson(0.5 * self.size * vol))):
                self.deposit(day, inv, self._amount(20_000))
            # the money's way to borrowers
            if self.active(day) and self.scheme == "fund_pool":
                self._fund_pool_day(day)
            else:
                if self.matched_plans and r.random() < 0.5:
                    self._matched_plan(day)
                else:
                    self._direct_loans(day)
        self._settle_pending(day)
        self._service_loans(day)
        self._recover(day)
        if not self._halted(day):
            self._pay_products(day)
        if self.active(day):
            getattr(self, f"_{self.scheme}_extra")(day)
        if self.risk_reserve is not None and day % 30 == 20 and not self._stopped(day) and self.balance[self.own] > 0:
            # the platform sets part of its fee income aside in the disclosed risk reserve
            self.tx(day, 16.5, "TRANSFER", self.own, self.risk_reserve, int(self.balance[self.own] * r.uniform(0.1, 0.3)),
                    memo="风险准备金计提")
        if day == self.buyback_day:
            self._buyback(day)
        if self._halted(day):
            return
        # investors take some idle money home; winding down, they take all of it
        winding = self.wind_down_day is not None and day >= self.wind_down_day
        n = self._poisson((1.5 if winding else 0.3) * self.size * (1 if winding else wd))
        for inv in r.sample(self.investors, min(len(self.investors), n)):
            amount = int(self.balance[inv] * (1.0 if winding else r.uniform(0.2, 0.9)))
            if self.own_fees is not None:
                self._own_fees(day, inv)
            self.external_out(day, 17, inv, self.ext[inv], amount)
        if winding and self.closed_day is None and not self.pending and all(p.paid for p in self.products) and all(
                set(lo.shares) <= {self.own} for lo in self.loans):
            self.closed_day = self.outcome_day = day  # every investor repaid: closed

    def _buyback(self, day: int) -> None:
        """Winding down, the shareholders buy every remaining direct claim at par (its principal; interest since
        the last installment is forgone), so investors are paid out now; the borrowers then repay the platform."""
        claims: list[tuple[Loan, str, int]] = []
        for loan in self.loans:
            if loan.via_pool or loan.defaulted:
                continue  # matched plans run off into their products
            claims.extend((loan, inv, principal) for inv, principal in loan.shares.items() if inv != self.own)
        total = sum(p for _, _, p in claims)
        if total <= 0:
            return
        self.tx(day, 9, "DEPOSIT", self.ctrl_card, self.own, max(0, total - self.balance[self.own]), memo="股东注资")
        for loan, inv, principal in claims:
            if self.tx(day, 10, "TRANSFER", self.own, inv, principal, loan.listing_id, memo="债权回购"):
                del loan.shares[inv]
                loan.shares[self.own] = loan.shares.get(self.own, 0) + principal

    def _loan_rate(self) -> float:
        lo, hi = self.borrower_rate
        return self.rng.uniform(lo, hi)

    def _direct_loans(self, day: int) -> None:
        r = self.rng
        related_share = self.sf_share if (self.active(day) and self.scheme == "self_financing") else 0.0
        # barely there is not absent: a scheme under way lends to its own at least every SF_FLOOR_DAYS (a small,
        # slow platform at the lowest intensity otherwise made no related loan at all, and its label meant nothing)
        due = (self.scheme == "self_financing" and self.started(day) and not self._stopped(day)
               and not (self.outcome_status == "RECTIFYING" and day >= self.outcome_day)
               and day - max(self.sf_last, self.start_day) >= SF_FLOOR_DAYS)
        for _ in range(self._poisson(0.6 * self.size)):
            related = r.random() < related_share or due
            if related:
                self.sf_last, due = day, False
            b = ""
            if related:
                pool = [b for b in self.borrowers if b in self.related_borrowers]
                b = r.choice(pool) if pool and r.random() < 0.6 else self._new_borrower(day, related=True)
            base = 150_000 if ("large_borrowers" in self.traits or (related and self.sf_big)) else 60_000
            amount = self._amount(base)
            if not related:
                b, amount = self._lawful_borrower(day, amount)
            elif self.variant == "nominees" and not self.sf_big:
                # a careful scheme keeps each nominee within a natural person's caps
                if self.w.holders.room(self.holder_of[b], self.pid, day) < amount:
                    b = self._new_borrower(day, related=True)
                amount = min(amount, self.w.holders.room(self.holder_of[b], self.pid, day))
            term = r.choice(self.term_mix)
            rate = self._loan_rate()
            lid = self._listing("LOAN", amount, rate, term, day, b)
            loan = Loan(lid, b, 0, rate, term, day)
            target = self.pool if (self.escrow and self.pool) else b
            loan.amount = self._raise(day, 10, lid, amount, target, loan.shares)
            if loan.amount == 0:
                continue
            if self.escrow and self.pool:
                self._disburse(day, self.pool, b, loan)
            self._after_disburse(day, loan)

    def _disburse(self, day: int, src: str, b: str, loan: Loan) -> None:
        """Escrowed loan money to the borrower; a platform that deducts its fee at source takes it here."""
        fee = int(loan.amount * self.fee) if self.fee_mode == "at_source" else 0
        self.tx(day, 11, "DISBURSE", src, b, loan.amount - fee, loan.listing_id)
        if fee and self.tx(day, 11, "FEE", src, self.own, fee, loan.listing_id, memo="借款服务费（放款时扣收）"):
            loan.fee_taken = True

    def _charge_fee(self, day: int, loan: Loan) -> None:
        """The borrower's disclosed fee: paid by the borrower, or advanced from the escrow and reimbursed into it by
        the borrower within days; and the borrower's contribution to a disclosed risk reserve."""
        fee = int(loan.amount * self.fee)
        if loan.fee_taken:
            pass
        elif (self.fee_mode == "advanced" and self.pool is not None and self.balance[self.pool] >= fee
              and self.tx(day, 11.5, "FEE", self.pool, self.own, fee, loan.listing_id, memo="借款服务费（存管代扣）")):
            self.tx(day + self.rng.randint(0, 4), 10, "TRANSFER", loan.borrower, self.pool, fee, loan.listing_id,
                    memo="借款服务费归还")
        else:
            self.tx(day, 11.5, "FEE", loan.borrower, self.own, fee, loan.listing_id, memo="服务费")
        if self.risk_reserve is not None and self.reserve_cut:
            self.tx(day, 11.6, "FEE", loan.borrower, self.risk_reserve, int(loan.amount * self.reserve_cut),
                    loan.listing_id, memo="风险准备金")

    def _after_disburse(self, day: int, loan: Loan) -> None:
        r = self.rng
        self.loans.append(loan)
        self.w.holders.loans.setdefault(self.holder_of.get(loan.borrower, ""), []).append((self.pid, loan))
        self.month_volume += loan.amount
        self._charge_fee(day, loan)
        b = loan.borrower
        if b in self.related_borrowers and self.variant == "hidden":
            # the shell forwards the loan to the controller within hours
            self.external_out(day, 13, b, self.ctrl_card if r.random() < 0.6 else r.choice(self.aff_cards),
                              int(self.balance[b] * r.uniform(0.85, 0.98)), type_="TRANSFER")
        elif b in self.related_borrowers and self.variant == "nominees":
            self._hand_over(day, b)
        elif b in self.related_borrowers:
            self.external_out(day, 15, b, self.ext[b], int(self.balance[b] * r.uniform(0.85, 0.98)))
        elif self.entrusted is not None and self.entrusted.random() < 0.5:
            self._entrusted_payment(day, b, loan)
        else:
            when = 12 if "large_borrowers" in self.traits else r.choice([14, 16])
            self.external_out(day + (0 if when < 15 else r.randint(0, 3)), when, b, self.ext[b],
                              int(self.balance[b] * r.uniform(0.6, 0.95)))

    def _entrusted_payment(self, day: int, b: str, loan: Loan) -> None:
        """The whole loan, as it reached the borrower, paid the same day to the seller it buys from: one of a few
        sellers (two to four, a new one now and then) that many of the platform's borrowers buy from."""
        side = self.entrusted
        assert side is not None
        if not self.sellers:
            self._new_seller(day)
            self._new_seller(day)
        elif len(self.sellers) < 4 and side.random() < 0.02:
            self._new_seller(day)
        seller = side.choice(self.sellers)
        self.tx(day, 12 + side.random(), "TRANSFER", b, seller, self.balance[b],
                memo=side.choice(["受托支付", "购车款", "货款", None]), rng=side)

    def _new_seller(self, day: int) -> None:
        holder = f"H-{self.pid}-SELLER{len(self.sellers) + 1}"
        self.w.holders.kinds.setdefault(holder, LEGAL)
        self.sellers.append(self._account(holder, "EXTERNAL", day))

    def _raise(self, day: int, hour: float, listing: str, amount: int, target: str, holdings: dict[str, int]) -> int:
        """Investors with idle money invest up to `amount` into `target` naming `listing`; returns what was raised."""
        got = 0
        for inv in self._funders(amount):
            share = min(self.balance[inv], amount - got)
            if share > 0 and self.tx(day, hour, "INVEST", inv, target, share, listing):
                holdings[inv] = holdings.get(inv, 0) + share
                got += share
        return got

    def _funders(self, amount: int) -> list[str]:
        rich = [i for i in self.investors if self.balance[i] > 0]
        self.rng.shuffle(rich)
        out, got = [], 0
        for inv in rich:
            out.append(inv)
            got += self.balance[inv]
            if got >= amount or len(out) >= 8:
                break
        return out

    def _matched_plan(self, day: int) -> None:
        """A lawful matched investment plan: product money goes straight into one loan of the same term."""
        r = self.rng
        term = r.choice(self.term_mix)
        rate = self._loan_rate()
        prate = max(0.03, rate - self.yield_spread)
        amount = self._amount(60_000)
        pid = self._listing("PRODUCT", amount, prate, term, day, None)
        prod = Product(pid, prate, term, day)
        if not self.pool:
            return
        got = self._raise(day, 10, pid, amount, self.pool, prod.holdings)
        if got == 0:
            return
        b, _ = self._lawful_borrower(day, got, clamp=False)  # the plan's money is raised: a borrower it fits
        lid = self._listing("LOAN", got, rate, term, day, b)
        loan = Loan(lid, b, got, rate, term, day, {self.pool: got}, via_pool=True, product_id=pid)
        self._disburse(day, self.pool, b, loan)
        prod.loan = loan
        self.matched[lid] = prod
        self.products.append(prod)
        self._after_disburse(day, loan)

    def _service_loans(self, day: int) -> None:
        r = self.rng
        keep = []
        for loan in self.loans:
            age = day - loan.start_day
            if loan.defaulted:
                continue
            monthly = loan.term > 90 and age > 0 and age % 30 == 0 and age < loan.term
            mature = age >= loan.term
            if not (monthly or mature):
                keep.append(loan)
                continue
            if r.random() < self.default_p / max(1, loan.term // 30) and not (loan.borrower in self.related_borrowers):
                loan.defaulted = True
                self.missed += 1
                self._defaulted(day, loan)
                continue
            related = loan.borrower in self.related_borrowers
            days_due = 30 if monthly else (loan.term % 30 or 30) if loan.term > 90 else loan.term
            manner = "due" if related else self._manner(monthly)
            if manner == "early":  # all the principal now, with this period's interest
                mature = True
            for inv, principal in loan.shares.items():
                interest = int(principal * loan.rate * days_due / 365)
                pay = interest + (principal if mature else 0)
                if manner in ("late", "partial"):
                    pay, interest = self._defer(day, loan, inv, pay, interest, manner)
                    if pay <= 0:
                        continue
                need = pay - self.balance[loan.borrower]
                if need > 0:
                    if related and self.variant not in UNDECLARED and r.random() < 0.5:
                        # related borrowers are topped up by the platform's own money, if any
                        src = self.own if self.balance[self.own] >= need else None
                        if src:
                            self.tx(day, 13.5, "TRANSFER", src, loan.borrower, need, memo="往来款")
                    if self.balance[loan.borrower] < pay:
                        self.external_in(day, 13, self.ext[loan.borrower], loan.borrower,
                                         need + r.randint(0, 5_000) * YUAN)
                memo = "利息" if not mature else "本息" if manner != "early" else "提前还款"
                if self.tx(day, 14, "REPAY", loan.borrower, inv, pay, loan.listing_id, interest=interest, memo=memo):
                    loan.returned += pay
            if not mature:
                keep.append(loan)
            else:
                loan.closed_day = day
        self.loans = keep

    def _manner(self, monthly: bool) -> str:
        """How a borrower meets an installment: when due, early (all of it, on a monthly date), late or in part."""
        x = self.rng.random()
        if monthly and x < self.p_early:
            return "early"
        x -= self.p_early
        return "late" if x < self.p_late else "partial" if x < self.p_late + self.p_partial else "due"

    def _defer(self, day: int, loan: Loan, payee: str, pay: int, interest: int, manner: str) -> tuple[int, int]:
        """Pay part (or none) of an installment now, the rest 3-45 days late with penalty interest; returns what is
        paid now and its interest part (interest is paid first)."""
        r = self.rng
        now = 0 if manner == "late" else int(pay * r.uniform(0.3, 0.8))
        late = r.randint(3, 45)
        rest = pay - now
        penalty = int(rest * PENALTY_PER_DAY * late)
        now_interest = min(interest, now)
        self.pending.append((day + late, loan, payee, rest + penalty, interest - now_interest + penalty))
        loan.late_parts += 1
        self.complaints += 0.02 * (len(self.matched[loan.listing_id].holdings) if loan.listing_id in self.matched else 1)
        return now, now_interest

    def _settle_pending(self, day: int) -> None:
        """Late installments come in."""
        due = [p for p in self.pending if p[0] <= day]
        if not due:
            return
        self.pending = [p for p in self.pending if p[0] > day]
        for _, loan, payee, amount, interest in due:
            short = amount - self.balance[loan.borrower]
            if short > 0:
                self.external_in(day, 13, self.ext[loan.borrower], loan.borrower, short)
            if self.tx(day, 14, "REPAY", loan.borrower, payee, amount, loan.listing_id, interest=interest, memo="逾期还款"):
                loan.returned += amount
            loan.late_parts -= 1

    def _holders(self, loan: Loan) -> int:
        prod = self.matched.get(loan.listing_id)
        return len(prod.holdings) if prod is not None else len(loan.shares)

    def _defaulted(self, day: int, loan: Loan) -> None:
        """A borrower stops paying. A disclosed risk reserve pays the loan's investors their principal as far as it
        goes (and takes over the claim); otherwise investors bear the loss. A claim the platform bought itself
        (winding down) is the platform's loss: the reserve is there for investors. Complaints follow; some
        borrowers pay part back later."""
        r = self.rng
        loan.closed_day = day
        principal = sum(loan.shares.values())
        self.overdue_events.append((day, principal))
        cover = 0.0
        if self.risk_reserve is not None and principal > 0:
            cover = min(1.0, self.balance[self.risk_reserve] / principal)
            for payee, p in loan.shares.items():
                amt = int(p * cover) if payee != self.own else 0
                if amt > 0 and self.tx(day, 15.5, "PAYOUT" if payee in self.ext else "TRANSFER", self.risk_reserve,
                                       payee, amt, loan.listing_id, memo="风险准备金垫付"):
                    loan.returned += amt
            if cover > 0:
                loan.recover_to = self.risk_reserve
        pressure = self._holders(loan) * (1 - cover) * r.uniform(0.3, 0.8) + self._holders(loan) * 0.05
        self.complaints += pressure
        if pressure >= 1.5 and "complaint_burst" not in self.traits and self.scheme is None:
            self.traits.append("complaint_burst")
        if r.random() < self.recovery_p:
            self.recoveries.append((day + r.randint(20, 90), loan, int(principal * r.uniform(0.2, 0.7))))

    def _recover(self, day: int) -> None:
        """Collections on defaulted loans: the borrower pays part back to whoever holds the claim."""
        due = [x for x in self.recoveries if x[0] <= day]
        if not due:
            return
        self.recoveries = [x for x in self.recoveries if x[0] > day]
        for _, loan, amount in due:
            self.external_in(day, 13, self.ext[loan.borrower], loan.borrower, amount)
            payees = {loan.recover_to: amount} if loan.recover_to else {
                k: int(amount * v / max(1, sum(loan.shares.values()))) for k, v in loan.shares.items()}
            for payee, amt in payees.items():
                if self.tx(day, 14, "REPAY", loan.borrower, payee, amt, loan.listing_id, memo="催收回款"):
                    self.overdue_events.append((day, -amt))
                    if payee != loan.recover_to:
                        loan.returned += amt
                    if payee == self.pool and loan.listing_id in self.matched and self.matched[loan.listing_id].paid:
                        self._pass_on(day, self.matched[loan.listing_id], amt, "催收回款分配")

    def _pass_on(self, day: int, prod: Product, amount: int, memo: str) -> None:
        """Pay a matched product's holders `amount` from the pool, pro rata; the interest part is what exceeds principal."""
        total = sum(prod.holdings.values())
        for inv, principal in prod.holdings.items():
            pay = int(amount * principal / max(1, total))
            if pay > 0 and not self.tx(day, 15, "PAYOUT", self.pool or self.own, inv, pay, prod.listing_id,
                                       interest=max(0, pay - principal), memo=memo):
                self.missed += 1

    def _pay_products(self, day: int) -> None:
        for prod in self.products:
            if prod.paid:
                continue
            if prod.loan is not None:
                # a matched plan pays what its loan returned, once the loan is repaid (early, late) or written off
                if prod.loan.closed_day is not None and (prod.loan.late_parts == 0 or prod.loan.defaulted):
                    prod.paid = True
                    self._pass_on(day, prod, prod.loan.returned, "到期兑付" if not prod.loan.defaulted else "逾期清算")
                continue
            if day - prod.start_day < prod.term:
                continue
            prod.paid = True
            src = self.pool or self.own
            for inv, principal in prod.holdings.items():
                interest = int(principal * prod.rate * prod.term / 365)
                pay = principal + interest
                if self.balance[src] < pay:
                    self.missed += 1
                    self.complaints += 0.5
                    self.overdue_events.append((day, principal))
                    continue
                self.tx(day, 15, "PAYOUT", src, inv, pay, prod.listing_id, interest=interest, memo="到期兑付")

    # ---- schemes ------------------------------------------------------------------------------
    def _fund_pool_day(self, day: int) -> None:
        """Short products sold into one pool; the pool lends long in lumps with no one-to-one match."""
        r = self.rng
        pool = self.pool if self.variant == "custody_pool" and self.pool else self.own
        for _ in range(1 + self._poisson(0.8 * self.size)):
            term = r.choice((30, 30, 60, 90))
            prate = r.uniform(0.07, 0.11)
            amount = self._amount(50_000)
            pid = self._listing("PRODUCT", amount, prate, term, day, None)
            prod = Product(pid, prate, term, day)
            self._raise(day, 10, pid, amount, pool, prod.holdings)
            self.products.append(prod)
        # lend out a slice of whatever sits in the pool to long loans
        if r.random() < 0.5 and self.balance[pool] > 0:
            for _ in range(r.randint(1, 3)):
                amount = int(self.balance[pool] * r.uniform(0.15, 0.35))
                if amount <= 0:
                    break
                b = self._new_borrower(day) if not self.borrowers or r.random() < 0.5 else r.choice(self.borrowers)
                term = r.choice((365, 540, 720))
                rate = self._loan_rate()
                lid = self._listing("LOAN", amount, rate, term, day, b)
                self.tx(day, 11, "DISBURSE", pool, b, amount, None if r.random() < 0.5 else lid)
                self._after_disburse(day, Loan(lid, b, amount, rate, term, day, {pool: amount}, via_pool=True))

    def _fund_pool_extra(self, day: int) -> None:
        pass

    def _misappropriation_extra(self, day: int) -> None:
        r = self.rng
        if r.random() > 0.25:
            return
        if self.variant == "pool_to_own" and self.pool and self.balance[self.pool] > 0:
            amt = int(self.balance[self.pool] * r.uniform(0.2, 0.6) * self.force)
            self.tx(day, 16, "TRANSFER", self.pool, self.own, amt, memo=r.choice(["服务费", "运营", None]))
        else:
            for inv in r.sample(self.investors, min(len(self.investors), r.randint(2, 6))):
                amt = int(self.balance[inv] * r.uniform(0.2, 0.5) * self.force)
                self.tx(day, 16, r.choice(["FEE", "TRANSFER"]), inv, self.own, amt, memo="管理费")
        if self.balance[self.own] > 0:
            dest = self.ctrl_card if r.random() < 0.5 else r.choice(self.aff_cards)
            self.external_out(day, 17, self.own, dest, int(self.balance[self.own] * r.uniform(0.5, 0.9)),
                              type_="TRANSFER", memo="往来款")

    def _undeclared_setup(self) -> None:
        """How blatant an undeclared scheme is (intensity 1) or barely there (0): the share of loans to nominees or
        insiders, loan sizes, how much of a loan a nominee hands over and how soon, whether money comes back."""
        if self.variant not in UNDECLARED:
            return
        r = self.rng
        u = self.intensity  # the scheme's intensity (_setup): the same number every part of the scheme follows
        self.sf_share = 0.1 + 0.45 * u
        self.sf_big = u > 0.5  # large loans, above the caps; a careful scheme keeps each nominee within them
        self.sf_accounts = self.sf_big and r.random() < 0.5  # one nominee holder with several borrower accounts
        self.sf_handover = (0.45 + 0.45 * u, 0.6 + 0.38 * u)
        self.sf_lag = round(6 * (1 - u))
        self.sf_return = max(0.0, 1.4 * u - 0.4)  # chance that a hand-over comes back to the platform

    def _nominee(self, n: int) -> tuple[str, str]:
        """A nominee borrower's holder: one company with several accounts, or people, some of whom also borrow on
        other platforms (holders shared across platforms)."""
        if self.sf_accounts:
            return f"H-{self.pid}-NOM", LEGAL
        holder = f"H-{self.pid}-NOM{n:03d}"
        if self.rng.random() < 0.3:
            self.w.holders.roaming.append(holder)
        return holder, NATURAL

    def _hand_over(self, day: int, b: str) -> None:
        """A nominee passes most of its loan to the collector within days; some of it may come back."""
        r = self.rng
        if self.collector is None:
            self.collector = self._account(f"H-{self.pid}-COL", "EXTERNAL", day)
        lag = r.randint(0, self.sf_lag)
        amt = int(self.balance[b] * r.uniform(*self.sf_handover))
        self.external_out(day + lag, 13 + 3 * r.random(), b, self.collector, amt, type_="TRANSFER",
                          memo=r.choice(["货款", "往来款", None]))
        if r.random() < self.sf_return:
            self.sf_due.append((day + lag + r.randint(0, 3), int(amt * r.uniform(0.4, 0.9))))

    def _self_financing_extra(self, day: int) -> None:
        r = self.rng
        if self.sf_due and self.collector is not None:
            due = [x for x in self.sf_due if x[0] <= day]
            self.sf_due = [x for x in self.sf_due if x[0] > day]
            for _, amt in due:
                # back into the platform's own account, which pays investors' maturities with it
                self.tx(day, 10, "DEPOSIT", self.collector, self.own, amt, memo="往来款")
                for inv in r.sample(self.investors, min(len(self.investors), r.randint(1, 4))):
                    part = int(amt * r.uniform(0.1, 0.3))
                    self.tx(day, 15, "PAYOUT", self.own, inv, part, interest=int(part * 0.08), memo="到期兑付")
        if self.variant == "hidden" and self.related_borrowers and r.random() < 0.1 and self.balance[self.own] > 0:
            # the platform's own funds reach the shell too: the money reveals the tie
            self.tx(day, 16, "TRANSFER", self.own, r.choice(sorted(self.related_borrowers)),
                    int(self.balance[self.own] * r.uniform(0.2, 0.5)), memo="借款")

    def _ponzi_extra(self, day: int) -> None:
        """Promise high yields; pay old investors from new money and from the platform's own funds."""
        r = self.rng
        if not self.advertised:
            self.advertised = True
            self.w.platforms.append({**self._registry(), "advertised_annual_yield": round(self.ponzi_yield, 4),
                                     "updated_at": T0 + day * DAY_MS})
        if r.random() < 0.4 or not self.investors:
            # sell a high-yield product; money pools on the platform's own account
            term = r.choice((30, 90, 180))
            amount = self._amount(60_000)
            pid = self._listing("PRODUCT", amount, self.ponzi_yield * r.uniform(0.9, 1.1), term, day, None)
            prod = Product(pid, self.ponzi_yield, term, day)
            self._raise(day, 10.5, pid, amount, self.own, prod.holdings)
            self.products.append(prod)
        if day % 7 == 0 and self.investors:
            # weekly "interest" and bonuses to older investors, from whatever the own account holds
            old = self.investors[: max(1, len(self.investors) // 2)]
            for inv in r.sample(old, min(len(old), r.randint(1, 1 + int(7 * self.force)))):
                amt = int(self._amount(800 * self.force))
                self.tx(day, 15.5, "PAYOUT", self.own, inv, amt, interest=amt, memo=r.choice(["加息奖励", "收益", "红包"]))

    def _reserve_misuse_extra(self, day: int) -> None:
        pass

    def _registry(self) -> dict[str, Any]:
        return dict(next(p for p in self.w.platforms if p["platform_id"] == self.pid))

    # ---- payment institutions -------------------------------------------------------------------
    def _payment_day(self, day: int) -> None:
        r = self.rng
        misuse = self.active(day) and self.variant in ("misuse", "both")
        clearing = self.active(day) and self.variant in ("clearing", "both")
        settled: dict[tuple[str, str], int] = {}
        vol, _ = self._season(day)
        for _ in range(self._poisson(6 * self.size * vol)):
            self.n_investors += 1
            payer_holder = f"H-{self.pid}-U{self.n_investors:05d}"
            reserve = r.choice(self.reserves)
            if self.n_investors % 7 == 0 or not self.investors:
                card = self._account(payer_holder, "EXTERNAL", day)
                self.investors.append(card)
            card = r.choice(self.investors)
            amt = self._amount(300)
            self.external_in(day, 9 + r.random() * 8, card, reserve, amt)
            m = r.choice(self.merchants)
            book = self.float if m in self.weekly_merchants else settled
            book[(reserve, m)] = book.get((reserve, m), 0) + amt
        if day % 7 == 6:  # weekly merchants are settled on Sundays
            for k, amt in self.float.items():
                settled[k] = settled.get(k, 0) + amt
            self.float = {}
        # misuse happens before the day's receipts are settled (next morning)
        if misuse and r.random() < 0.3:
            reserve = max(self.reserves, key=lambda a: self.balance[a])
            amt = int(self.balance[reserve] * r.uniform(0.3, 0.7) * self.force)
            dest = self.own if r.random() < 0.5 else r.choice(self.aff_cards + [self.ctrl_card])
            if dest == self.own:
                self.tx(day, 18, "TRANSFER", reserve, self.own, amt, memo="调拨")
                self.external_out(day, 19, self.own, self.ctrl_card, int(self.balance[self.own] * 0.8), type_="TRANSFER")
            else:
                self.external_out(day, 18, reserve, dest, amt, type_="TRANSFER", memo="往来款")
        total = 0
        for (reserve, m), amt in settled.items():
            fee = int(amt * self.fee)
            if clearing and len(self.reserves) > 1 and r.random() < 0.5 * self.force:
                # route through another bank's reserve account: clearing across banks
                other = r.choice([x for x in self.reserves if x != reserve])
                self.tx(day + 1, 9.5, "TRANSFER", reserve, other, amt - fee, memo="清算")
                reserve = other
            elif self.balance[reserve] < amt and len(self.reserves) > 1:
                reserve = max(self.reserves, key=lambda a: self.balance[a])  # rebalanced away: pay from the other bank
            if self.tx(day + 1, 10, "TRANSFER", reserve, m, amt - fee, memo="结算"):
                total += amt
            else:
                self.missed += 1
                self.complaints += 0.3
            self.tx(day + 1, 10.5, "FEE", reserve, self.own, fee, memo="手续费")
        self.month_volume += total
        if self.rebalance_every and day % self.rebalance_every == 0:
            # what the cooperating bank's reserve collected and still holds is swept to the custodian bank's, in
            # round lumps (weekly merchants are then settled from there)
            main, coop = self.reserves
            lump = int(self.balance[coop] * r.uniform(0.6, 0.9)) // 100_000 * 100_000  # whole 1000 yuan
            if lump > 0:
                self.tx(day + 1, 16, "TRANSFER", coop, main, lump, memo="备付金归集")
        if self.balance[self.own] > 0 and day % 30 == 15:
            self.external_out(day, 17, self.own, self.ext.get(self.own, self.ctrl_card),
                              int(self.balance[self.own] * 0.5), memo="经营支出")

    # ---- disclosures ----------------------------------------------------------------------------
    def _disclose(self, day: int) -> None:
        """The monthly operating disclosure, as real ones are: some platforms leave fields empty, round, repeat a
        stale month, skip one or keep an irregular cadence (the next period then covers more)."""
        r = self.rng
        started = self.started(day)
        self.next_disclosure = day + (30 if not self.sloppy else r.choice((30, 30, 30, 21, 25, 35, 45)))
        if self.sloppy and self.last_disclosure is not None and r.random() < self.skip_p:
            return  # a month not published
        outstanding = sum(v for l in self.loans if not l.defaulted for k, v in l.shares.items() if k != self.own) + sum(
            sum(p.holdings.values()) for p in self.products if not p.paid and p.loan is None)
        rel_out = sum(l.amount for l in self.loans if l.borrower in self.related_borrowers)
        if self.payment:
            yields: dict[str, float] = {}
            avg_y = None
            avg_term = None
        else:
            by_term: dict[str, list[float]] = {}
            src = [(p.term, p.rate) for p in self.products[-40:]] + [
                (l.term, max(0.0, l.rate - self.yield_spread)) for l in self.loans[-40:] if not l.via_pool]
            for term, y in src:
                by_term.setdefault(_bucket(term), []).append(y)
            yields = {k: round(sum(v) / len(v), 4) for k, v in by_term.items()}
            avg_y = round(sum(y for _, y in src) / len(src), 4) if src else None
            if self.scheme == "fund_pool" and started and r.random() < 0.6 * self.force:
                avg_term = float(r.choice((180, 270, 365)))  # discloses the loans' terms, not the products'
            else:
                avg_term = round(sum(t for t, _ in src) / len(src), 1) if src else None
        complaints = self._complaints(day)
        shares = sorted((l.amount for l in self.loans), reverse=True)
        top10 = (sum(shares[:10]) / sum(shares)) if shares else None
        honest_rel = self.scheme != "self_financing" or (self.variant == "declared" and r.random() < 0.5)
        late = sum(p[3] for p in self.pending)
        bad = max(0, sum(a for d, a in self.overdue_events if day - d < 90))
        rec = dict(
            platform_id=self.pid, period_end=T0 + day * DAY_MS + 23 * HOUR,
            investors=self.legacy_investors + len(self.investors), borrowers=self.legacy_borrowers + len(self.borrowers),
            volume=self.month_volume, outstanding=outstanding if not self.payment else None,
            avg_annual_yield=avg_y, yield_by_term=yields, avg_term_days=avg_term,
            top10_borrower_share=round(top10, 4) if top10 is not None else None,
            top10_investor_share=round(r.uniform(0.05, 0.4), 4),
            overdue_rate=round(min(1.0, (late + bad) / max(1, outstanding + late + bad)), 4) if not self.payment else None,
            related_party_outstanding=rel_out if honest_rel else 0,
            complaints=complaints)
        if self.sloppy:
            if self.last_disclosure is not None and r.random() < self.stale_p:
                rec = {**self.last_disclosure, "period_end": rec["period_end"]}  # last month's figures again
            else:
                rec = self._blur(rec)
        self.w.disclosures.append(rec)
        self.last_disclosure = rec
        self.last_published_day = day
        self.month_volume = 0

    def _blur(self, rec: dict[str, Any]) -> dict[str, Any]:
        """A sloppy platform's habits: fields left empty (some always), money rounded, yields to a coarse step."""
        r = self.rng
        out = dict(rec)
        for k in OPTIONAL_FIELDS:
            if out[k] is not None and (k in self.never or r.random() < self.null_p):
                out[k] = None
        if r.random() < self.null_p:
            out["yield_by_term"] = {}
        if self.round_money:
            for k in MONEY_FIELDS:
                if out[k]:
                    out[k] = max(self.round_money, round(out[k] / self.round_money) * self.round_money)
        step = self.yield_step
        if out["avg_annual_yield"] is not None:
            out["avg_annual_yield"] = round(round(out["avg_annual_yield"] / step) * step, 4)
        out["yield_by_term"] = {k: round(round(v / step) * step, 4) for k, v in out["yield_by_term"].items()}
        for k in ("top10_borrower_share", "top10_investor_share"):
            if out[k] is not None:
                out[k] = round(out[k], 2)
        if out["avg_term_days"] is not None:
            out["avg_term_days"] = float(round(out["avg_term_days"]))
        return out

    def _complaints(self, day: int) -> int:
        """Complaints since the last published disclosure: a base that grows with size and the holiday seasons,
        the pressure of defaults and missed payments (fading month by month), and for a scheme, once investors
        start to notice (late), a heat that grows; all overdispersed, since complaints come in waves."""
        r = self.rng
        lo = self.last_published_day
        months = max(1, day - lo) / 30
        seasonal = sum(market_season(d)[2] for d in range(lo + 1, day + 1)) / 30
        if self.started(day) and day >= self.complaint_onset:
            self.heat += r.uniform(0.3, 1.5) * self.intensity * months * (1 + (day - self.complaint_onset) / 45)
        lam = 0.3 * self.size * (months + 2 * seasonal) + self.complaints + self.heat
        self.complaints *= 0.4
        return self._poisson(lam * r.gammavariate(1.5, 1 / 1.5))

    # ---- helpers --------------------------------------------------------------------------------
    def _poisson(self, lam: float) -> int:
        if lam <= 0:
            return 0
        if lam > 50:  # the product method underflows; the normal approximation is close here
            return max(0, int(round(self.rng.gauss(lam, math.sqrt(lam)))))
        l, k, p = math.exp(-min(lam, 50)), 0, 1.0
        while True:
            p *= self.rng.random()
            if p <= l:
                return k
            k += 1

    def _amount(self, median_yuan: float) -> int:
        return int(self.rng.lognormvariate(math.log(median_yuan), 0.6)) * YUAN

    def outcome(self) -> dict[str, Any]:
        """What became of the platform, as the Outcome record a supervisor would keep (decided by the last day)."""
        s = self.outcome_status
        lead = SOURCES[self.kind]
        source = {"POLICE_INVESTIGATION": "公安机关", "RUN_AWAY": "新闻报道", "WITHDRAWAL_DIFFICULTY": "投资人投诉、新闻报道",
                  "CLOSED": f"平台公告，{lead}备案"}.get(s, lead)
        note = self.outcome_note or {
            "NORMAL": None, "RECTIFYING": "现场检查发现问题，限期整改。",
            "SUSPENDED": "责令停业整改。", "WITHDRAWAL_DIFFICULTY": "投资人反映提现困难，平台逾期兑付。",
            "POLICE_INVESTIGATION": "涉嫌非法吸收公众存款，立案侦查。", "RUN_AWAY": "平台失联，实际控制人下落不明。",
            "CLOSED": "停止经营。"}[s]
        if s == "CLOSED" and self.closed_day is None:
            note = (note or "") + "清退中，存量借贷按期清偿。"
        return dict(platform_id=self.pid, status=s, decided_at=T0 + self.outcome_day * DAY_MS + 18 * HOUR,
                    source=source, note=note)


def _bucket(term: int) -> str:
    if term <= 30:
        return "<=30d"
    if term <= 90:
        return "31-90d"
    if term <= 180:
        return "91-180d"
    if term <= 365:
        return "181-365d"
    return ">365d"


def simulate(platforms: int, days: int, seed: int, scheme_share: float = 0.3) -> World:
    """Build a world of `platforms` platforms over `days` days; deterministic for a seed."""
    rng = random.Random(seed)
    world = World()
    sims: list[_Platform] = []
    kinds = list(KIND_WEIGHTS)
    for i in range(platforms):
        prng = random.Random(rng.getrandbits(64))
        scheme = None
        if prng.random() < scheme_share:
            scheme = SCHEMES[i % len(SCHEMES)]
        kind = prng.choice(SCHEME_KINDS[scheme]) if scheme else prng.choices(kinds, list(KIND_WEIGHTS.values()))[0]
        start = int(days * prng.uniform(0.15, 0.5)) if scheme else days + 1
        sims.append(_Platform(world, prng, i + 1, kind, scheme, start, days))
    cross = [p for p in sims if p.variant == "cross_platform"]  # controllers borrow on each other's platform
    for a, b in zip(cross[::2], cross[1::2]):
        a.partner, b.partner = b, a
    if len(cross) % 2:
        cross[-1].variant = "nominees"
    for day in range(days):
        for p in sims:
            p.step(day)
    world.transactions.sort(key=lambda t: (t["ts"], t["tx_id"]))
    world.disclosures.sort(key=lambda d: (d["period_end"], d["platform_id"]))
    world.outcomes = [p.outcome() for p in sims]
    # lawful_variants: the lawful behaviours a platform runs (a scheme platform shares them too); lawful_traits is
    # the same list under its older name, kept for readers that still use it
    world.labels = {
        "seed": seed, "days": days, "start_ms": T0,
        "platforms": {p.pid: {"scheme": p.scheme, "variant": p.variant,
                              "start_day": p.start_day if p.scheme else None,
                              "intensity": p.intensity if p.scheme else None,
                              "kind": p.kind, "custody": p.custody, "lawful_variants": list(p.traits),
                              "lawful_traits": list(p.traits), "outcome": p.outcome_status,
                              "wind_down_day": p.wind_down_day,
                              "expected_detectors": list(SCHEME_DETECTORS[p.scheme]) if p.scheme else []}
                      for p in sims},
    }
    return world


def write_world(world: World, out: Path, outcomes_for: Collection[str] = ()) -> dict[str, int]:
    """Write the world as Avro object container files plus labels.json; returns record counts.

    Outcomes are labels a supervisor would know only for some platforms: `outcomes_for` names the platforms
    whose outcomes go to outcomes.avro (none by default)."""
    import fastavro

    from ingest.sources import FILES
    from schemas import schema

    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    labelled = set(outcomes_for)
    for name, records in (("Platform", world.platforms), ("Account", world.accounts), ("Listing", world.listings),
                          ("Transaction", world.transactions), ("Disclosure", world.disclosures),
                          ("Outcome", [o for o in world.outcomes if o["platform_id"] in labelled])):
        if name == "Outcome" and not records:
            continue
        with open(out / FILES[name], "wb") as fh:
            fastavro.writer(fh, schema(name).parsed, records, codec="deflate")
        counts[name] = len(records)
    (out / "labels.json").write_text(json.dumps(world.labels, indent=1, ensure_ascii=False), encoding="utf-8")
    return counts
