"""Custody reconciliation is exact to the fen on lawful flows, and taking client money always shows (issue 8).

A lawful P2P platform in custody is generated as a program of business actions (deposits and withdrawals,
direct and escrow investment, borrower fees, escrow charges the platform reimburses, investor fees within
the disclosed 10 % of interest and fee waivers, partial, early, late and delayed repayments, defaults whose
loss the investors bear, refunds of unfilled or partly filled listings, the platform's own capital and
revenue; amounts from 1 fen to the door's 10^15 per movement, over up to eight months). A small interpreter
turns the program into the records a custodian bank streams (Platform, Account, Listing, Transaction),
keeping every custody balance non-negative; they go through the production door: Avro single-object
encoding, `decode`, the Gate of ingest/validate.py and `Ledger.apply` inside `Pipeline`, which assesses at
every day boundary with the production rules over the 30- and 90-day windows (`Assessor.findings`).

Properties:
- lawful: at every assessment the custody reconciliation (`reconcile`) balances to the fen, and no fraud
  rule fires (`FRAUD` below: every detector a lawful lending platform's money could plausibly trip);
- each way of taking client money (`MUTATIONS`), injected into a lawful program, gives its finding, and
  the reconciliation's shortfall equals what was taken, to the fen. Findings have materiality floors, so
  each taking is made at least as large as they ask: 1万元 (MATERIAL) for every rule; for custody_shortfall
  also 0.5 % of what clients are owed (sized at 4 %); for misappropriation by fees above the disclosed level 1 % of the
  window's client deposits (a non-fee transfer needs only 1万元); for ponzi_payout 30 % of the window's
  pool payouts. The shortfall itself has no floor: it is asserted to the fen whatever the size.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.assess import Assessor
from detectors.base import Finding
from detectors.rules.misappropriation import MATERIAL, Reconciliation, reconcile
from graph.ledger import Ledger
from ingest.dead_letters import MemoryDeadLetters
from ingest.pipeline import Pipeline
from ingest.validate import DEFAULT_LIMITS
from schemas.records import DAY_MS, Account, Listing, Platform, Transaction
from tests.helpers import T0, ListSource, raw

PID = "P1"
OTHER = "P0"
MAX_FEN = DEFAULT_LIMITS.max_amount  # one movement's ceiling at the door
RELATED = ("CTRL", "AFF1")  # declared related parties: lawful money never reaches them
# The rules a lawful lending platform's money could plausibly trip, because the generated flows are their
# inputs: client money to the platform's account (misappropriation, custody_shortfall), escrow in and out
# (fund_pool), payouts and refunds to investors from pooled and own accounts (ponzi_payout, subsidy), loans
# to borrowers (self_financing, pass_through). Out of scope, with nothing generated for them to read:
# maturity_mismatch and excess_yield judge PRODUCT listings and advertised yields (promises, not movements),
# reserve_misuse and cross_bank_clearing payment institutions' reserves, unlicensed_finance, complaint_surge,
# disclosure_lapse and tip_offs registry records, disclosures and tips. Any finding at the alert floor
# (MEDIUM) or above also fails, whatever its rule; the LOW typologies below it are informational by design.
# borrowing_cap is out of scope too: the programs test the reconciliation at any size the door allows, so their
# loans are larger than art. 17 lets one borrower owe (tests/test_self_financing.py has the caps and near-misses).
OUT_OF_SCOPE = frozenset({"borrowing_cap"})
FRAUD = frozenset({"misappropriation", "custody_shortfall", "fund_pool", "ponzi_payout", "subsidy", "self_financing",
                   "pass_through"})
RATES_BP = (500, 800, 1000, 1200, 1500, 1800, 2400)  # annual, basis points: lawful, at most the 24 % line
TERMS = (7, 30, 60, 90, 180, 365, 720)
BORROWER_FEE_BP = (0, 50, 200, 500, 800)


@dataclass
class Loan:
    """A listing and who holds its outstanding principal (the escrow pool's subscribers while it raises)."""

    lid: str
    borrower: str
    rate_bp: int
    term: int
    start_ms: int
    escrow: bool
    subscribed: dict[str, int] = field(default_factory=dict)  # escrow: investor -> money waiting in the pool
    shares: dict[str, int] = field(default_factory=dict)  # investor -> outstanding principal
    target: int = 0
    raising: bool = True
    paid_to_ms: int = 0
    defaulted: bool = False

    @property
    def outstanding(self) -> int:
        return sum(self.shares.values())


def split(total: int, weights: dict[str, int]) -> dict[str, int]:
    """`total` in proportion to `weights`, largest remainders first: the parts sum to `total` exactly."""
    w = sum(weights.values())
    parts = {k: total * v // w for k, v in weights.items()}
    rest = total - sum(parts.values())
    for k in sorted(weights, key=lambda k: (-(total * weights[k] % w), k))[:rest]:
        parts[k] += 1
    return parts


class Custody:
    """Interprets a program of business actions into custody records, as a lawful platform would move money.

    Every movement is one the custodian executes: custody accounts never go below zero, amounts stay
    within the door's bounds (a larger sum moves in several transactions), times only move forward."""

    def __init__(self, investors: int, borrowers: int) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []
        self.bal: dict[str, int] = {}
        self.ms = T0
        self.n = 0
        self.loans: list[Loan] = []
        self.pending: list[tuple[str, str, str, int, str | None, int | None]] = []  # payouts due next action
        self.moves: list[tuple[int, str, str, str, int, int, str | None]] = []  # (ts, type, payer, payee, amount, interest, listing)
        self.frozen = False  # after a mutation took escrow money: no more escrow business (it could not pay)
        self._emit("custody.platforms", Platform(
            PID, "连云港测试网络借贷信息中介有限公司", "P2P_LENDING", "LICENSED", "320703", "网络借贷信息中介", T0,
            custodian_id="CB01", related_parties=list(RELATED)))
        self.own = self._account("OWN", "PLATFORM_OWN", "H-P1")
        self.own_card = self._account("XOWN", "EXTERNAL", "H-P1")  # the platform's basic account, outside custody
        self.pool = self._account("POOL", "CUSTODY_POOL", "H-P1")
        self.bank = self._account("BANKFEE", "EXTERNAL", "CB01")  # the custodian's fee income
        self.vendor = self._account("VENDOR", "EXTERNAL", "H-VENDOR")  # a supplier of the platform's
        self.related_cards = [self._account(f"X{h}", "EXTERNAL", h) for h in RELATED]
        self.investors = [self._account(f"I{k}", "INVESTOR", f"H-I{k}") for k in range(investors)]
        self.borrowers = [self._account(f"B{k}", "BORROWER", f"H-B{k}") for k in range(borrowers)]
        self.card = {a: self._account("X" + a, "EXTERNAL", f"H-{a}") for a in self.investors + self.borrowers}
        # the rest of the custodian's stream: another platform whose daily movements keep event time going
        # while this one is quiet (the door refuses money more than 7 days ahead of the stream)
        self._emit("custody.platforms", Platform(OTHER, "其他平台", "P2P_LENDING", "LICENSED", "320703", "网络借贷信息中介",
                                                 T0, custodian_id="CB01"))
        for aid, role in (("P0-X", "EXTERNAL"), ("P0-I", "INVESTOR")):
            self._emit("custody.accounts", Account(aid, OTHER, "H-P0-I", role, T0, "CB01"))
        self.ms = T0 + 9 * 3_600_000

    # ---- records --------------------------------------------------------------------------------
    def _emit(self, topic: str, rec: Any) -> None:
        self.records.append((topic, type(rec).__name__, asdict(rec)))

    def _account(self, aid: str, role: str, holder: str) -> str:
        self._emit("custody.accounts", Account(aid, PID, holder, role, T0, "CB01"))
        if role != "EXTERNAL":
            self.bal[aid] = 0
        return aid

    def tx(self, type_: str, src: str, dst: str, amount: int, listing: str | None = None,
           interest: int | None = None) -> None:
        """Move `amount` (several transactions above the door's ceiling); the payer must hold it."""
        assert amount > 0 and (src not in self.bal or self.bal[src] >= amount), (type_, src, amount)
        left_interest = interest
        while amount > 0:
            part = min(amount, MAX_FEN)
            i = None if left_interest is None else min(left_interest, part)
            self.n += 1
            self.ms += 1000
            self._emit("custody.transactions", Transaction(f"T{self.n}", "CB01", PID, self.ms, type_, src, dst, part,
                                                           listing_id=listing, interest=i))
            self.moves.append((self.ms, type_, src, dst, part, i or 0, listing))
            if src in self.bal:
                self.bal[src] -= part
            if dst in self.bal:
                self.bal[dst] += part
            amount -= part
            if left_interest is not None:
                left_interest -= i or 0

    def next_day(self, gap: int) -> None:
        """Move to 09:00 `gap` days on (at most 6: a lone platform's stream may not jump 7 days ahead)."""
        for _ in range(gap):
            self.ms = (self.ms // DAY_MS + 1) * DAY_MS + 8 * 3_600_000
            self.n += 1
            self._emit("custody.transactions", Transaction(f"T{self.n}", "CB01", OTHER, self.ms, "DEPOSIT", "P0-X",
                                                           "P0-I", 100))
            self.ms += 3_600_000

    def client_money(self) -> int:
        """What the client accounts (investors' and the escrow pool) hold at the custodian."""
        return sum(self.bal[a] for a in (*self.investors, self.pool))

    # ---- the business ---------------------------------------------------------------------------
    def flush(self) -> None:
        """Escrowed repayments reach the investors (the action after the repayment: up to 6 days later)."""
        for args in self.pending:
            self.tx(*args)
        self.pending = []

    def deposit(self, x: int, amount: int) -> None:
        inv = self.investors[x % len(self.investors)]
        self.tx("DEPOSIT", self.card[inv], inv, amount)

    def withdraw(self, x: int, y: int, amount: int) -> None:
        inv = self.investors[x % len(self.investors)]
        out = self.bal[inv] * (y % 100 + 1) // 100
        if out:
            self.tx("WITHDRAWAL", inv, self.card[inv], out)
        else:
            self.deposit(x, amount)

    def _listing(self, x: int, y: int, amount: int, escrow: bool) -> Loan:
        self.n += 1
        borrower = self.borrowers[x % len(self.borrowers)]
        rate, term = RATES_BP[y % len(RATES_BP)], TERMS[y // 7 % len(TERMS)]
        lid = f"L{self.n}"
        self._emit("custody.listings", Listing(lid, PID, "LOAN", amount, rate / 10_000, term, self.ms, borrower))
        loan = Loan(lid, borrower, rate, term, self.ms, escrow, target=amount)
        self.loans.append(loan)
        return loan

    def _subscribe(self, loan: Loan, target: int, start: int) -> None:
        """Investors with idle money invest in turn until the listing is full; unless `start` says the
        listing stays short, the last of them tops up from their card to fill it."""
        raised = sum(loan.subscribed.values()) + sum(loan.shares.values())
        for k in range(len(self.investors)):
            inv = self.investors[(start + k) % len(self.investors)]
            if k == len(self.investors) - 1 and start % 3 and self.bal[inv] < target - raised:
                self.tx("DEPOSIT", self.card[inv], inv, target - raised - self.bal[inv])
            amount = min(self.bal[inv], target - raised)
            if amount <= 0:
                continue
            self.tx("INVEST", inv, self.pool if loan.escrow else loan.borrower, amount, loan.lid)
            book = loan.subscribed if loan.escrow else loan.shares
            book[inv] = book.get(inv, 0) + amount
            raised += amount

    def _lent(self, loan: Loan, y: int) -> None:
        """After the money reaches the borrower: the platform's disclosed fee, and the borrower takes some home."""
        loan.raising = False
        loan.paid_to_ms = self.ms
        got = loan.outstanding
        fee = got * BORROWER_FEE_BP[y % len(BORROWER_FEE_BP)] // 10_000
        if fee:
            self.tx("FEE", loan.borrower, self.own, fee, loan.lid)
        home = self.bal[loan.borrower] * (y % 3) // 3
        if home:
            self.tx("WITHDRAWAL", loan.borrower, self.card[loan.borrower], home)

    def direct(self, x: int, y: int, amount: int) -> None:
        """Direct investment: investors' money goes straight to the borrower, naming the listing."""
        loan = self._listing(x, y, amount, escrow=False)
        self._subscribe(loan, amount, y)
        if loan.shares:
            self._lent(loan, y)
        else:
            loan.raising = False

    def escrow(self, x: int, y: int, amount: int) -> None:
        """Escrow investment opens: subscriptions wait in the custody pool, naming the listing."""
        loan = self._listing(x, y, amount, escrow=True)
        self._subscribe(loan, amount * (y % 2 + 1) // 2, y)  # half or all of it at once

    def _open(self) -> list[Loan]:
        return [lo for lo in self.loans if lo.escrow and lo.raising]

    def _active(self) -> list[Loan]:
        return [lo for lo in self.loans if not lo.raising and not lo.defaulted and lo.outstanding > 0]

    def subscribe(self, x: int, y: int, amount: int) -> None:
        loans = self._open()
        if not loans:
            return self.escrow(x, y, amount)
        lo = loans[x % len(loans)]
        self._subscribe(lo, lo.target, y)

    def close(self, x: int, y: int, amount: int) -> None:
        """An escrow listing closes: lent in full, lent in part with the rest refunded, or refunded (unfilled).
        The custodian may charge the escrow for the transfer; the platform reimburses the charge at once."""
        loans = self._open()
        if not loans:
            return self.escrow(x, y, amount)
        lo = loans[x % len(loans)]
        raised = sum(lo.subscribed.values())
        mode = y % 4
        lend = raised if mode < 2 else raised * (y // 4 % 100) // 100 if mode == 2 else 0
        if lend:
            lo.shares = split(lend, lo.subscribed)
            if mode == 1:
                charge = max(1, lend * 5 // 10_000)
                self.tx("FEE", self.pool, self.bank, charge, lo.lid)
                if self.bal[self.own] < charge:
                    self.tx("DEPOSIT", self.own_card, self.own, charge - self.bal[self.own])
                self.tx("TRANSFER", self.own, self.pool, charge, lo.lid)
            self.tx("DISBURSE", self.pool, lo.borrower, lend, lo.lid)
        refunds = {inv: amt - lo.shares.get(inv, 0) for inv, amt in lo.subscribed.items()}
        for inv, amt in refunds.items():
            if amt > 0:
                self.tx("REFUND", self.pool, inv, amt, lo.lid)
        lo.subscribed = {}
        if lend:
            self._lent(lo, y)
        else:
            lo.raising = False

    def repay(self, x: int, y: int, amount: int) -> None:
        """The borrower pays interest and some, all or none of the principal: on time, early or late (a late
        one with penalty interest). Direct loans pay each investor; escrow loans pay the pool, which passes
        it on at the next action. Investors may be charged a service fee of at most 10 % of their interest."""
        loans = self._active()
        if not loans:
            return self.direct(x, y, amount)
        lo = loans[x % len(loans)]
        days = (self.ms - lo.paid_to_ms) // DAY_MS
        late = self.ms > lo.start_ms + lo.term * DAY_MS
        interest = lo.outstanding * lo.rate_bp * days // (365 * 10_000) * (3 if late else 2) // 2
        share = (0, 1, 2, 3)[y % 4]  # thirds of the outstanding principal: none, part, ..., all (early or due)
        principal = {inv: p * share // 3 for inv, p in lo.shares.items()}
        interests = split(interest, lo.shares) if interest else {inv: 0 for inv in lo.shares}
        pay = {inv: principal[inv] + interests[inv] for inv in lo.shares}
        need = sum(pay.values())
        if need == 0:
            return
        if self.bal[lo.borrower] < need:
            self.tx("DEPOSIT", self.card[lo.borrower], lo.borrower, need - self.bal[lo.borrower])
        fee_pct = y // 4 % 11  # investor service fee, percent of interest: 0..10
        if lo.escrow:
            self.tx("REPAY", lo.borrower, self.pool, need, lo.lid, interest)
            for inv, amt in pay.items():
                if amt:
                    self.pending.append(("PAYOUT", self.pool, inv, amt, lo.lid, interests[inv]))
                if interests[inv] * fee_pct // 100:
                    self.pending.append(("FEE", inv, self.own, interests[inv] * fee_pct // 100, lo.lid, None))
        else:
            for inv, amt in pay.items():
                if amt:
                    self.tx("REPAY", lo.borrower, inv, amt, lo.lid, interests[inv])
                if interests[inv] * fee_pct // 100:
                    self.tx("FEE", inv, self.own, interests[inv] * fee_pct // 100, lo.lid)
        for inv in lo.shares:
            lo.shares[inv] -= principal[inv]
        lo.paid_to_ms = self.ms

    def default(self, x: int, y: int, amount: int) -> None:
        """The borrower stops paying after recovering part of the principal; the investors bear the loss."""
        loans = self._active()
        if not loans:
            return self.direct(x, y, amount)
        lo = loans[x % len(loans)]
        recovered = {inv: p * (y % 3) // 4 for inv, p in lo.shares.items()}
        if sum(recovered.values()):
            self.tx("DEPOSIT", self.card[lo.borrower], lo.borrower, sum(recovered.values()))
            for inv, amt in recovered.items():
                if amt:
                    if lo.escrow:
                        self.tx("REPAY", lo.borrower, self.pool, amt, lo.lid, 0)
                        self.tx("PAYOUT", self.pool, inv, amt, lo.lid, 0)
                    else:
                        self.tx("REPAY", lo.borrower, inv, amt, lo.lid, 0)
        lo.defaulted = True

    def waive(self, x: int, y: int) -> None:
        """The platform gives an investor back part of the service fees it charged them (a fee waiver)."""
        inv = self.investors[x % len(self.investors)]
        paid = sum(m[4] for m in self.moves if m[1] == "FEE" and m[2] == inv and m[3] == self.own)
        back = sum(m[4] for m in self.moves if m[1] == "REFUND" and m[2] == self.own and m[3] == inv)
        amount = (paid - back) * (y % 100 + 1) // 100
        if amount > 0:
            if self.bal[self.own] < amount:
                self.tx("DEPOSIT", self.own_card, self.own, amount - self.bal[self.own])
            self.tx("REFUND", self.own, inv, amount)

    def capital(self, x: int, amount: int) -> None:
        """The platform puts its own money into its own custody account, or takes its revenue home."""
        if x % 2 and self.bal[self.own]:
            self.tx("WITHDRAWAL", self.own, self.own_card, self.bal[self.own] * (x % 100 + 1) // 100 or 1)
        else:
            self.tx("DEPOSIT", self.own_card, self.own, amount)

    def borrower_cash(self, x: int, y: int, amount: int) -> None:
        """A borrower moves its own money between custody and its card."""
        b = self.borrowers[x % len(self.borrowers)]
        if y % 2 and self.bal[b]:
            self.tx("WITHDRAWAL", b, self.card[b], self.bal[b] * (y % 100 + 1) // 100 or 1)
        else:
            self.tx("DEPOSIT", self.card[b], b, amount)

    def run(self, program: list[tuple[str, int, int, int, int]]) -> None:
        for kind, gap, x, y, amount in program:
            self.next_day(gap)
            self.flush()
            if self.frozen and kind in ("escrow", "subscribe", "close"):
                kind = "direct"
            if kind == "deposit":
                self.deposit(x, amount)
            elif kind == "withdraw":
                self.withdraw(x, y, amount)
            elif kind == "direct":
                self.direct(x, y, amount)
            elif kind == "escrow":
                self.escrow(x, y, amount)
            elif kind == "subscribe":
                self.subscribe(x, y, amount)
            elif kind == "close":
                self.close(x, y, amount)
            elif kind == "repay":
                self.repay(x, y, amount)
            elif kind == "default":
                self.default(x, y, amount)
            elif kind == "waive":
                self.waive(x, y)
            elif kind == "capital":
                self.capital(x, amount)
            elif kind == "borrower_cash":
                self.borrower_cash(x, y, amount)
            else:
                raise ValueError(kind)
        self.flush()


# ---- taking client money -------------------------------------------------------------------------------------
# what each mutation must trip (besides the reconciliation's shortfall, checked to the fen)
MUTATIONS: dict[str, frozenset[str]] = {
    "pool_to_own": frozenset({"misappropriation", "custody_shortfall"}),  # escrow money to the platform, not a fee
    "investor_to_own": frozenset({"misappropriation", "custody_shortfall"}),  # an investor's balance, "管理费" transfer
    "investor_fee_above_disclosed": frozenset({"misappropriation", "custody_shortfall"}),  # > 10 % of the interest
    "escrow_fee_to_own": frozenset({"misappropriation", "custody_shortfall"}),  # the platform's fee out of escrow
    "own_takes_back_more": frozenset({"misappropriation", "custody_shortfall"}),  # puts C in, takes C + X out
    "pool_pays_vendor": frozenset({"custody_shortfall"}),  # escrow pays the platform's supplier
    "pool_to_related": frozenset({"custody_shortfall"}),  # escrow pays the actual controller's card
    "ponzi_payout": frozenset({"ponzi_payout"}),  # new investors' subscriptions pay an old investor "interest"
    "ponzi_as_refund": frozenset({"ponzi_payout"}),  # the same, called a refund of the new listing
}


@dataclass(frozen=True)
class Taking:
    kind: str
    at_ms: int  # the last injected movement
    amount: int  # X: what clients lost (expected shortfall); for a Ponzi, what was paid out of others' money


class Mutant(Custody):
    """A lawful platform that, once, takes client money in one of the ways the rules prohibit."""

    def _since(self, days: int, type_: str, payer: str | None = None) -> int:
        """What moved as `type_` (from `payer`) in the last `days` days."""
        cut = self.ms - days * DAY_MS
        return sum(m[4] for m in self.moves if m[0] > cut and m[1] == type_ and payer in (None, m[2]))

    def fees_slack(self) -> int:
        """How much more fees may be before they pass the disclosed levels: 10 % of the interest investors
        received (fees the platform waived, given back to whom paid them, are not fees). The program's borrowers
        pay their own fees, so the escrow pays none that names a loan; one naming none is no fee at all."""
        interest = sum(m[5] for m in self.moves if m[1] in ("REPAY", "PAYOUT") and m[3] in self.investors)
        fees = 0
        for a in self.investors:
            paid = sum(m[4] for m in self.moves if m[1] == "FEE" and m[2] == a and m[3] == self.own)
            kept = max(0, paid - sum(m[4] for m in self.moves if m[1] == "REFUND" and m[2] == self.own and m[3] == a))
            fees += kept
        return interest * 10 // 100 - fees

    def unnamed_fee_over(self) -> int:
        """Fees the platform charged an investor naming no loan, beyond that investor's own level: 200 yuan, or three
        times 10 % of the interest it received (less what the platform refunded it), summed over investors."""
        total = 0
        for a in self.investors:
            fee = sum(m[4] for m in self.moves if m[1] == "FEE" and m[2] == a and m[3] == self.own and m[6] is None)
            interest = sum(m[5] for m in self.moves if m[3] == a)
            back = sum(m[4] for m in self.moves if m[1] == "REFUND" and m[2] == self.own and m[3] == a)
            total += max(0, fee - back - max(20_000, 3 * interest * 10 // 100))
        return total

    def _escrow_money(self, amount: int, investor: int) -> str:
        """Fresh subscriptions wait in the pool: an investor deposits and subscribes to a new escrow listing."""
        inv = self.investors[investor % len(self.investors)]
        self.n += 1
        lid = f"L{self.n}"
        self._emit("custody.listings", Listing(lid, PID, "LOAN", min(amount, MAX_FEN), 0.1, 90, self.ms,
                                               self.borrowers[0]))
        self.tx("DEPOSIT", self.card[inv], inv, amount)
        self.tx("INVEST", inv, self.pool, amount, lid)
        return lid

    def take(self, kind: str, extra: int, who: int) -> Taking:
        """Inject `kind` now (after the due payouts), at least the materiality every rule it must trip asks:
        1万元 (MATERIAL), 0.5 % of what clients are owed (custody_shortfall; sized at 4 %), 1 % of the 30 days' client deposits
        (misappropriation by excess fees), 30 % of the window's pool payouts (ponzi_payout); `extra` percent more."""
        self.flush()
        owed = self.client_money()  # lawful so far: owed == held
        base = max(MATERIAL, (owed + max(0, self.fees_slack()) + self._since(30, "DEPOSIT")) // 25 + 1,
                   self._since(90, "PAYOUT", self.pool) + self._since(90, "REFUND", self.pool))
        x = base + base * extra // 100
        inv = self.investors[who % len(self.investors)]
        if kind in ("pool_to_own", "pool_pays_vendor", "pool_to_related", "escrow_fee_to_own"):
            slack = 0  # a fee out of the escrow naming no loan has no disclosed level to hide under
            if self.bal[self.pool] < x + slack:
                self._escrow_money(x + slack - self.bal[self.pool], who)
            to = {"pool_to_own": self.own, "pool_pays_vendor": self.vendor, "escrow_fee_to_own": self.own,
                  "pool_to_related": self.related_cards[0]}[kind]
            self.tx("FEE" if kind == "escrow_fee_to_own" else "TRANSFER", self.pool, to, x + slack)
            self.frozen = True
        elif kind in ("investor_to_own", "investor_fee_above_disclosed"):
            slack = max(0, self.fees_slack()) if kind == "investor_fee_above_disclosed" else 0
            if self.bal[inv] < x + slack:
                self.tx("DEPOSIT", self.card[inv], inv, x + slack - self.bal[inv])
            self.tx("FEE" if kind == "investor_fee_above_disclosed" else "TRANSFER", inv, self.own, x + slack)
            if kind == "investor_fee_above_disclosed":  # naming no loan: beyond that investor's own level, taken too
                return Taking(kind, self.ms, max(x, self.unnamed_fee_over()))
        elif kind == "own_takes_back_more":
            put = x * (extra % 7 + 1)  # the platform's own money into escrow, then more than that out
            self.tx("DEPOSIT", self.own_card, self.own, put)
            self.tx("TRANSFER", self.own, self.pool, put)
            if self.bal[self.pool] < put + x:
                self._escrow_money(put + x - self.bal[self.pool], who)
            self.tx("TRANSFER", self.pool, self.own, put + x)
            self.frozen = True
        elif kind in ("ponzi_payout", "ponzi_as_refund"):
            # a new investor's money, at least three times what the pool holds (so the trace finds it in what is
            # paid out), pays an earlier investor
            old = self.investors[who % len(self.investors)]
            new = self._account(f"I{len(self.investors)}", "INVESTOR", f"H-I{len(self.investors)}")
            self.investors.append(new)
            self.card[new] = self._account("X" + new, "EXTERNAL", f"H-{new}")
            lid = self._escrow_money(max(x, 3 * self.bal[self.pool]), len(self.investors) - 1)
            if kind == "ponzi_payout":
                self.tx("PAYOUT", self.pool, old, x, None, x // 10)
            else:  # a "refund" of the new listing, to someone who never subscribed to it
                self.tx("REFUND", self.pool, old, x, lid)
            self.frozen = True
        else:
            raise ValueError(kind)
        return Taking(kind, self.ms, x)


# ---- the production door and the assessments ---------------------------------------------------------
@dataclass(frozen=True)
class Snapshot:
    now_ms: int
    findings: tuple[Finding, ...]
    recon: Reconciliation


class Recorder(Assessor):
    """The production rules over the production windows, recorded at each assessment; no population
    scoring (one platform has no peers, and scores are not what is tested here)."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshots: list[Snapshot] = []

    def assess(self, ledger: Ledger, *, refit: bool = False, platforms: Any = None, population: Any = None) -> list[Any]:
        self.snapshots.append(Snapshot(ledger.now_ms, tuple(self.findings(ledger, PID)), reconcile(ledger, PID)))
        return []


def through_the_door(records: list[tuple[str, str, dict[str, Any]]]) -> tuple[Ledger, Recorder]:
    """Encode every record as the bank does and run the production pipeline over them, assessing daily."""
    offsets: dict[str, int] = {}
    messages = []
    for topic, name, fields in records:
        offsets[topic] = offsets.get(topic, -1) + 1
        messages.append(raw(topic, 0, offsets[topic], name, fields))
    ledger, recorder, dead = Ledger(), Recorder(), MemoryDeadLetters()
    Pipeline(ListSource(messages, batch=64), ledger, recorder, [], dead, assess_every_ms=DAY_MS).run()
    assert dead.items == [], [str(d) for d in dead.items[:3]]  # every generated record passes the door
    return ledger, recorder


# ---- strategies ---------------------------------------------------------------------------------------
KINDS = ("deposit", "deposit", "withdraw", "direct", "escrow", "subscribe", "close", "close", "repay", "repay",
         "repay", "default", "capital", "borrower_cash", "waive")
fen = st.one_of(st.integers(1, 10**5), st.integers(10**5, 10**10), st.integers(10**10, 10**15))
action = st.tuples(st.sampled_from(KINDS), st.integers(0, 6), st.integers(0, 2**16), st.integers(0, 2**16), fen)
programs = st.lists(action, min_size=25, max_size=80)
people = st.tuples(st.integers(1, 6), st.integers(1, 3))

SETTINGS = settings(max_examples=90, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def lawful(people: tuple[int, int], program: list[tuple[str, int, int, int, int]]) -> Custody:
    c = Custody(*people)
    c.run(program)
    return c


def fraud(s: Snapshot) -> list[str]:
    """The findings a lawful platform must not have: any of FRAUD, or anything at the alert floor."""
    return [f"{f.detector} {f.severity} {f.summary_en}" for f in s.findings
            if f.detector in FRAUD or (f.severity != "LOW" and f.detector not in OUT_OF_SCOPE)]


def day_of(s: Snapshot) -> float:
    return (s.now_ms - T0) / DAY_MS


def lawful_snapshots(people: tuple[int, int], program: list[tuple[str, int, int, int, int]]) -> list[Snapshot]:
    _, rec = through_the_door(lawful(people, program).records)
    return rec.snapshots


def mutated(people: tuple[int, int], program: list[tuple[str, int, int, int, int]], at: int, kind: str, extra: int,
            who: int, quiet: int = 0) -> tuple[Mutant, Taking]:
    """The lawful program with `kind` injected before its action `at`, after `quiet` days without business."""
    c = Mutant(*people)
    c.run(program[:at])
    for step in range(0, quiet, 6):
        c.next_day(min(6, quiet - step))
    taking = c.take(kind, extra, who)
    c.next_day(1)  # the day ends with the taking: the assessment at its end sees it alone
    c.run(program[at:])
    return c, taking


# ---- regressions: what the properties found (false alarms, missed takings, reconciliation errors) -------
def test_escrow_lent_after_the_window_opened_is_not_a_fund_pool() -> None:
    """An escrow listing raised on day 0 and lent on day 5 was, in the 30-day windows of days 30-34, CRITICAL
    fund_pool "disbursed naming no listing": its book had started before the window and its DISBURSE inside."""
    program = [("escrow", 0, 0, 1, 10**8), ("close", 5, 0, 0, 1)] + [("deposit", 6, 0, 0, 1)] * 6
    snaps = lawful_snapshots((2, 1), program)
    assert any(30 <= day_of(s) < 35 for s in snaps)
    assert [(day_of(s), fraud(s)) for s in snaps if fraud(s)] == []


def test_refund_of_an_unfilled_escrow_listing_is_not_a_ponzi_payout() -> None:
    """One investor's subscription to a listing that never filled, given back by the escrow pool, was a CRITICAL
    ponzi_payout ("100 % other investors' money"): refunds counted as payouts the borrowers had not funded."""
    program = [("deposit", 0, 0, 0, 10**7), ("escrow", 0, 0, 0, 10**8), ("close", 1, 0, 3, 1), ("deposit", 1, 0, 0, 1)]
    c = lawful((1, 1), program)
    assert [r[2]["type"] for r in c.records if r[1] == "Transaction" and r[2]["platform_id"] == PID] == [
        "DEPOSIT", "INVEST", "REFUND", "DEPOSIT"]
    _, rec = through_the_door(c.records)
    assert [(day_of(s), fraud(s)) for s in rec.snapshots if fraud(s)] == []


def test_investor_fee_on_interest_of_an_older_loan_is_not_misappropriation() -> None:
    """A 10 % service fee on interest paid 36 days after the loan was lent was HIGH misappropriation: the 30-day
    window allowed fees only on the interest of listings that started inside it (none)."""
    program = [("deposit", 0, 0, 0, 10**12), ("direct", 0, 0, 6, 10**12)] + [("deposit", 6, 0, 0, 1)] * 6 + [
        ("repay", 0, 0, 40, 1), ("deposit", 1, 0, 0, 1)]
    c = lawful((1, 1), program)
    fee = [r[2] for r in c.records if r[1] == "Transaction" and r[2]["type"] == "FEE" and r[2]["from_account"] == "I0"]
    interest = [r[2]["interest"] for r in c.records if r[1] == "Transaction" and r[2]["type"] == "REPAY"]
    assert len(fee) == 1 and fee[0]["amount"] == interest[0] // 10 >= MATERIAL and fee[0]["ts"] >= T0 + 36 * DAY_MS
    _, rec = through_the_door(c.records)
    assert [(day_of(s), fraud(s)) for s in rec.snapshots if fraud(s)] == []


def test_escrow_repayment_passed_on_after_the_window_opened_is_not_a_ponzi_payout() -> None:
    """A borrower repaid into the escrow pool on day 7 and the pool paid the investor on day 13: in the 30-day
    windows opening between the two, the payout was CRITICAL ponzi_payout (the pool also held another
    listing's subscriptions, so the pro-rata trace called it 99 % other investors' money)."""
    program = [("deposit", 0, 0, 0, 10**8), ("escrow", 0, 0, 1, 10**8), ("close", 1, 0, 0, 1),
               ("deposit", 0, 1, 0, 10**10), ("escrow", 0, 0, 0, 10**11), ("repay", 6, 0, 3, 1)] + [
        ("deposit", 6, 0, 0, 1)] * 7
    c = lawful((2, 1), program)
    pool = [(r[2]["type"], (r[2]["ts"] - T0) // DAY_MS) for r in c.records
            if r[1] == "Transaction" and r[2]["type"] in ("REPAY", "PAYOUT")]
    assert pool == [("REPAY", 7), ("PAYOUT", 13)]
    snaps = [s for s in lawful_snapshots((2, 1), program) if 7 < day_of(s) - 29 <= 13]
    assert snaps and [(day_of(s), fraud(s)) for s in snaps if fraud(s)] == []


def test_escrow_interest_counts_once_in_the_disclosed_fee_level() -> None:
    """An investor charged 15 % of the interest an escrow loan paid (above the disclosed 10 %) left no shortfall
    and no finding: the interest was counted twice, once repaid into the pool and once paid on to the investor."""
    program = [("escrow", 0, 0, 13, 10**12), ("close", 1, 0, 0, 1)] + [("deposit", 6, 0, 0, 1)] * 5 + [
        ("repay", 0, 0, 43, 1), ("deposit", 1, 0, 0, 1)]
    c = lawful((1, 1), program)
    interest = sum(m[5] for m in c.moves if m[1] == "PAYOUT")
    assert [m[1] for m in c.moves if m[5]] == ["REPAY", "PAYOUT"] and interest > 0
    extra = interest * 15 // 100 - interest * 10 // 100  # the lawful program charged 10 % with the payout
    c.tx("FEE", "I0", "OWN", extra)
    ledger, rec = through_the_door(c.records)
    assert reconcile(ledger, PID).shortfall == extra  # 0.14 % of what clients are owed: below the 0.5 % floor
    assert "misappropriation" in {f.detector for f in rec.snapshots[-1].findings}


def _escrow_base() -> Custody:
    """One investor's 100万元 waiting in the escrow pool for a listing that is not full yet."""
    return lawful((1, 1), [("deposit", 0, 0, 0, 10**8), ("escrow", 0, 0, 0, 10**9)])


def test_escrow_paying_a_third_party_is_a_shortfall_unless_the_platform_reimburses_it() -> None:
    """The pool paying the platform's supplier 5万元 reconciled (anything not to the platform or a related party
    passed as lawful, against the rule's own words: to clients, borrowers and clients' own cards); the same
    charge by the custodian, reimbursed by the platform at once, balances to the fen."""
    taken, charged = _escrow_base(), _escrow_base()
    assert taken.bal["POOL"] == charged.bal["POOL"] == 10**8
    taken.tx("TRANSFER", "POOL", "VENDOR", 5 * 10**6)
    charged.tx("FEE", "POOL", "BANKFEE", 5 * 10**6)
    charged.tx("DEPOSIT", "XOWN", "OWN", 5 * 10**6)
    charged.tx("TRANSFER", "OWN", "POOL", 5 * 10**6)
    for c, lost in ((taken, 5 * 10**6), (charged, 0)):
        c.next_day(1)
        ledger, rec = through_the_door(c.records)
        assert reconcile(ledger, PID).shortfall == lost
        assert ("custody_shortfall" in {f.detector for f in rec.snapshots[-1].findings}) == bool(lost)


def test_the_platform_taking_back_more_than_it_put_in_is_short_by_the_difference() -> None:
    """The platform put 10万元 of its own into the escrow pool and took 15万元 out: the shortfall read 15万元
    (what it put back counted as owed to clients, what it took as missing); clients are short 5万元."""
    c = _escrow_base()
    c.tx("DEPOSIT", "XOWN", "OWN", 10**7)
    c.tx("TRANSFER", "OWN", "POOL", 10**7)
    c.tx("TRANSFER", "POOL", "OWN", 10**7 + 5 * 10**6)
    c.next_day(1)
    ledger, rec = through_the_door(c.records)
    assert reconcile(ledger, PID).shortfall == 5 * 10**6
    assert {"misappropriation", "custody_shortfall"} <= {f.detector for f in rec.snapshots[-1].findings}


def test_taking_escrow_money_after_three_quiet_months_is_misappropriation() -> None:
    """5万元 moved from the escrow pool to the platform's own account 96 days after the last client deposit gave
    no misappropriation finding: the rule returned nothing for a window without client deposits."""
    c = _escrow_base()
    for _ in range(16):
        c.next_day(6)
    c.tx("TRANSFER", "POOL", "OWN", 5 * 10**6)
    c.next_day(1)
    ledger, rec = through_the_door(c.records)
    assert reconcile(ledger, PID).shortfall == 5 * 10**6
    found = {f.detector: f for f in rec.snapshots[-1].findings}
    assert "misappropriation" in found and dict(found["misappropriation"].metrics)["taken_fen"] == 5 * 10**6


def test_the_disclosed_fee_level_is_exact_to_the_fen_at_any_size() -> None:
    """Interest of 9,007,199,254,740,999 fen (within the door's bounds, in ten movements) allows fees of exactly
    900,719,925,474,099 fen; the float product int(0.10 * interest) allowed one fen more, so a fee one fen
    above the level reconciled."""
    c = lawful((1, 1), [])
    interest = 9_007_199_254_740_999
    loan = c._listing(0, 0, MAX_FEN, escrow=False)
    c.tx("DEPOSIT", "XB0", "B0", interest)
    c.tx("REPAY", "B0", "I0", interest, loan.lid, interest)
    c.tx("FEE", "I0", "OWN", interest // 10 + 1)
    c.next_day(1)
    ledger, _ = through_the_door(c.records)
    assert int(0.10 * interest) == interest // 10 + 1  # what the float arithmetic allowed
    assert reconcile(ledger, PID).shortfall == 1


def test_fee_waivers_are_not_subsidies_but_bonuses_called_refunds_are() -> None:
    """The platform gave an investor back the service fee it had just charged, three times in a month: MEDIUM
    subsidy, as if it paid returns out of its own pocket. Refunds beyond the fees investors paid still are."""
    program = [("deposit", 0, 0, 0, 10**9), ("direct", 0, 0, 6, 10**9)] + [
        ("repay", 6, 0, 40, 1), ("waive", 0, 0, 99, 1)] * 3 + [("deposit", 1, 0, 0, 1)]
    c = lawful((1, 1), program)
    assert [m[1] for m in c.moves if m[2] == "I0" and m[3] == "OWN" or m[2] == "OWN" and m[3] == "I0"] == [
        "FEE", "REFUND"] * 3
    _, rec = through_the_door(c.records)
    assert [(day_of(s), fraud(s)) for s in rec.snapshots if fraud(s)] == []
    for _ in range(3):
        c.tx("DEPOSIT", "XOWN", "OWN", 10**6)
        c.tx("REFUND", "OWN", "I0", 10**6)  # a 1万元 "bonus" each time: nothing of theirs to give back
    c.next_day(1)
    _, rec = through_the_door(c.records)
    assert "subsidy" in {f.detector for f in rec.snapshots[-1].findings}


def test_a_fee_waiver_gives_back_the_fee_not_money_taken_otherwise() -> None:
    """An investor paid a lawful fee and later lost 2万元 to a transfer to the platform; the platform then waived
    the fee. With what the platform pays back restoring non-fee takings first (as 637782f had it), the waiver
    shrank the 2万元 shortfall by the fee: a refund gives fees back first."""
    program = [("deposit", 0, 0, 0, 10**9), ("direct", 0, 0, 6, 10**9), ("repay", 6, 0, 40, 1)]
    c = lawful((1, 1), program)
    fee = sum(m[4] for m in c.moves if m[1] == "FEE" and m[2] == "I0")
    assert fee > 0
    c.tx("TRANSFER", "I0", "OWN", 2 * 10**6)
    c.waive(0, 99)
    assert c.moves[-1][1:5] == ("REFUND", "OWN", "I0", fee)
    c.next_day(1)
    ledger, _ = through_the_door(c.records)
    assert reconcile(ledger, PID).shortfall == 2 * 10**6


def test_a_payout_called_a_refund_gets_no_credit_from_older_genuine_refunds() -> None:
    """An unfilled listing's 100万元 were given back on day 1; 96 days later a new investor's 50万元 went to the
    old investor as a REFUND naming no listing. The genuine refund's credit, counted over the platform's life,
    also covered the windows' fake one: no ponzi_payout. Earlier refunds use up their part of the credit first."""
    c = lawful((2, 1), [("deposit", 0, 0, 0, 10**8), ("escrow", 0, 0, 0, 10**9), ("close", 1, 0, 3, 1)])
    assert [m[1] for m in c.moves] == ["DEPOSIT", "INVEST", "REFUND"]
    for _ in range(16):
        c.next_day(6)
    c.tx("DEPOSIT", "XI1", "I1", 5 * 10**7)
    c.tx("INVEST", "I1", "POOL", 5 * 10**7, c.loans[0].lid)
    c.tx("REFUND", "POOL", "I0", 5 * 10**7)
    c.next_day(1)
    _, rec = through_the_door(c.records)
    assert "ponzi_payout" in {f.detector for f in rec.snapshots[-1].findings}


def test_a_refund_to_someone_who_never_subscribed_is_a_payout() -> None:
    """A new investor's 50万元 subscription to a listing, "refunded" to another investor who never subscribed to
    it, passed as a refund (the listing had raised and not lent that much): no ponzi_payout."""
    c = lawful((2, 1), [("deposit", 0, 0, 0, 10**7)])
    c.tx("DEPOSIT", "XI1", "I1", 5 * 10**7)
    lid = c._listing(0, 0, 5 * 10**7, escrow=True).lid
    c.tx("INVEST", "I1", "POOL", 5 * 10**7, lid)
    c.tx("REFUND", "POOL", "I0", 5 * 10**7, lid)
    c.next_day(1)
    _, rec = through_the_door(c.records)
    assert "ponzi_payout" in {f.detector for f in rec.snapshots[-1].findings}

# ---- the properties ------------------------------------------------------------------------------------------
@SETTINGS
@given(people, programs)
def test_lawful_custody_reconciles_to_the_fen_and_raises_no_fraud_finding(people: tuple[int, int],
                                                                         program: list[tuple[str, int, int, int, int]]
                                                                         ) -> None:
    """Every assessment of a lawful platform: owed == held to the fen, and none of the fraud rules fires."""
    c = lawful(people, program)
    ledger, rec = through_the_door(c.records)
    assert rec.snapshots, "the pipeline assessed"
    assert reconcile(ledger, PID).held == c.client_money()  # the ledger holds what the custodian does
    for s in rec.snapshots:
        assert s.recon.shortfall == 0, (s.now_ms, s.recon)
        assert fraud(s) == [], (s.now_ms, fraud(s))


@pytest.mark.parametrize("kind", sorted(MUTATIONS))
@settings(SETTINGS, max_examples=12)
@given(people=people, program=programs, at=st.integers(0, 80), extra=st.integers(0, 300), who=st.integers(0, 5),
       quiet=st.one_of(st.just(0), st.integers(1, 120)))
def test_taking_client_money_trips_its_rule_and_the_reconciliation_to_the_fen(
        kind: str, people: tuple[int, int], program: list[tuple[str, int, int, int, int]], at: int, extra: int,
        who: int, quiet: int) -> None:
    """Injected anywhere into a lawful program: at the first assessment after it, the rules `MUTATIONS` names
    fire and the reconciliation's shortfall is exactly what clients lost; at the end too, later lawful business
    neither hides nor adds to it. Two exceptions, by the rules: a Ponzi payout moves money between clients (no
    shortfall), and a fee above the disclosed level is measured against all the interest investors received,
    so later interest the platform charges less than 10 % on makes room for it, to the fen; naming no loan, the
    fee is also held to the level of the investor who paid it, and what is beyond that is lost whatever room the
    others' interest makes."""
    c, taking = mutated(people, program, min(at, len(program)), kind, extra, who, quiet)
    ledger, rec = through_the_door(c.records)
    after = next(s for s in rec.snapshots if s.now_ms >= taking.at_ms)
    lost = 0 if kind.startswith("ponzi") else taking.amount
    assert MUTATIONS[kind] <= {f.detector for f in after.findings}, (day_of(after), after.findings)
    assert after.recon.shortfall == lost, (after.recon, taking)
    if kind == "investor_fee_above_disclosed":
        lost = max(0, -c.fees_slack(), c.unnamed_fee_over())
    assert reconcile(ledger, PID).shortfall == lost
    assert reconcile(ledger, PID).held == c.client_money()
