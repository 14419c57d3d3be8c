"""An independently built custody world for checking fundwatch.

Run:
    .venv/bin/python benchmarks/independent_world.py --out /tmp/iw --seed 7 [--platforms 200 --days 150]
    .venv/bin/fundwatch replay /tmp/iw --report /tmp/iw-report.json --dead-letters /tmp/iw-dead.jsonl
    .venv/bin/python benchmarks/independent_world.py --evaluate /tmp/iw --report /tmp/iw-report.json

Independence: this generator was written from /work/shared/DOMAIN.md, the seed documents, the Avro
schemas in schemas/*.avsc and the README's record-contract / publishing / replay sections only. It does
not import, read or imitate ingest/simulator.py; amounts, timings, account structures and scheme
mechanics are this file's own choices. It writes Avro object container files with fastavro (schemas
parsed from schemas/), plus labels.json with every platform's truth:
    {platform_id: {"segment": "custody"|"disclosure_only", "truth": "lawful"|"scheme",
                   "variant": ..., "scheme": None|fund_pool|misappropriation|self_financing|ponzi|
                   reserve_misuse, "intensity": None|blatant|medium|subtle}}

Ledger conventions modelled (a custody bank's view):
  * each investor/borrower has a custody sub-account plus a bound bank card (EXTERNAL, same holder);
    DEPOSIT card->sub-account, WITHDRAWAL sub-account->card;
  * "escrow" platforms: INVEST investor->CUSTODY_POOL (listing), DISBURSE pool->borrower when funded,
    REFUND pool->investor when a loan fails to fill, REPAY borrower->pool, PAYOUT pool->investors;
  * "direct" platforms: INVEST investor->borrower on closing, REPAY borrower->each investor;
  * FEE borrower->PLATFORM_OWN (service fee at disbursement) and investor->PLATFORM_OWN (interest cut);
    some platforms FEE borrower->RISK_RESERVE and pay defaulted loans' investors from the reserve.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
from collections import defaultdict

import fastavro
import fastavro.schema

DAY = 86_400_000
T0 = 1_459_440_000_000  # 2016-04-01 00:00 UTC (period of the rectification work plans)
YUAN = 100
HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA_DIR = os.path.join(HERE, "..", "schemas")

JURIS = ["320703", "320706", "320707", "320722", "320723", "320724",
         "652301", "652302", "652323", "652324", "652325", "652327", "652328"]
BANKS = ["CB-JSNX", "CB-ICBC-LYG", "CB-XJRC", "CB-BOCOM-CJ", "CB-CMB"]


def load_schemas():
    named = {}
    tdir = os.path.join(SCHEMA_DIR, "types")
    for f in sorted(os.listdir(tdir)):
        if f.endswith(".avsc"):
            fastavro.parse_schema(json.load(open(os.path.join(tdir, f))), named_schemas=named)
    out = {}
    for stem in ["platform", "account", "listing", "transaction", "disclosure", "outcome"]:
        parsed = fastavro.parse_schema(json.load(open(os.path.join(SCHEMA_DIR, stem + ".avsc"))),
                                       named_schemas=dict(named))
        # container headers must carry a self-contained schema: inline the shared named types
        out[stem] = fastavro.parse_schema(fastavro.schema.expand_schema(parsed))
    return out


class World:
    def __init__(self, seed, days):
        self.r = random.Random(seed)
        self.days = days
        self.platforms, self.accounts, self.listings, self.txs = [], [], [], []
        self.disclosures, self.outcomes, self.labels = [], [], {}
        self.ntx = 0
        self.shared_borrowers = []  # (holder_id, kind) that borrow on several platforms, lawfully

    def txid(self):
        self.ntx += 1
        return "T%09d" % self.ntx


class Plat:
    """One platform in custody, simulated day by day."""

    def __init__(self, w: World, pid, variant, scheme=None, intensity=None, kind="P2P_LENDING"):
        self.w, self.r, self.pid = w, w.r, pid
        self.variant, self.scheme, self.intensity, self.kind = variant, scheme, intensity, kind
        self.bank = self.r.choice(BANKS)
        self.bal = defaultdict(int)
        self.mode = "escrow" if self.r.random() < 0.6 else "direct"
        self.related = ["CTRL-%s" % pid, "SH-%s-1" % pid]
        self.loans = []          # dicts
        self.products = []       # fund-pool / ponzi products held by investors
        self.investors = []      # account ids
        self.inv_card = {}
        self.borrowers = []
        self.month_stats = defaultdict(lambda: defaultdict(int))
        self.acc_holder = {}
        self.complaints = 0
        self.stop_payouts_day = None
        self.doomed = False
        # size and behaviour knobs (own choices)
        size = {"big_old": 4.0, "small_new": 0.35}.get(variant, self.r.uniform(0.6, 1.6))
        self.size = size
        self.inv_rate = 0.9 * size          # new investors per day
        self.loan_every = max(1.0, 4.0 / size)
        self.rate_lo, self.rate_hi = (0.07, 0.10) if variant == "big_old" else (0.09, 0.14)
        if variant == "small_new":
            self.rate_lo, self.rate_hi = 0.10, 0.15
        self.fee_rate = self.r.choice([0.005, 0.01, 0.015, 0.02, 0.03])
        self.interest_cut = self.r.choice([0.0, 0.0, 0.05, 0.1])
        self.reserve = self.r.random() < 0.4 or scheme == "reserve_misuse"
        self.default_p = {"high_default": 0.18}.get(variant, self.r.uniform(0.0, 0.06))
        self.wind_down_day = self.r.randint(40, 90) if variant == "winding_down" else None
        self.seasonal = variant == "seasonal"
        self.launched = T0 - DAY * (self.r.randint(900, 1500) if variant == "big_old" else
                                   self.r.randint(20, 60) if variant == "small_new" else
                                   self.r.randint(150, 800))
        self.pool = self.acct("POOL", "CUSTODY_POOL", "H-%s-POOL" % pid, "LEGAL_PERSON", T0 - DAY)
        self.own = self.acct("OWN", "PLATFORM_OWN", "H-%s-CO" % pid, "LEGAL_PERSON", T0 - DAY)
        self.resv = self.acct("RSV", "RISK_RESERVE", "H-%s-CO" % pid, "LEGAL_PERSON", T0 - DAY) if self.reserve else None
        self.own_card = self.acct("OWNCARD", "EXTERNAL", "H-%s-CO" % pid, "LEGAL_PERSON", T0 - DAY, custodian=None)
        self.ctrl_card = self.acct("CTRLCARD", "EXTERNAL", self.related[0], "NATURAL_PERSON", T0 - DAY, custodian=None)
        self.shell_card = None
        if scheme == "self_financing" and intensity == "subtle":
            self.shell_card = self.acct("SHELL", "EXTERNAL", "SHELL-%s" % pid, "LEGAL_PERSON", T0 - DAY, custodian=None)
        if scheme == "reserve_misuse" and intensity != "subtle":
            # reserve kept at another bank than the platform's custodian (seen: 变相跨行清算 style)
            pass
        adv = None
        if scheme == "ponzi":
            adv = {"blatant": 0.22, "medium": 0.165, "subtle": 0.128}[intensity]
        elif self.r.random() < 0.7:
            adv = round(self.r.uniform(self.rate_lo - 0.01, self.rate_hi - 0.015) * 200) / 200
        self.adv = adv

    # ---------------------------------------------------------------- records
    def acct(self, suffix, role, holder, hkind, opened, custodian="SAME"):
        aid = "%s-%s" % (self.pid, suffix)
        cust = self.bank if custodian == "SAME" else custodian
        if role == "EXTERNAL" and custodian == "SAME":
            cust = None
        rec = {"account_id": aid, "platform_id": self.pid, "holder_id": holder, "role": role,
               "custodian_id": cust, "opened_at": opened,
               "holder_kind": hkind if self.r.random() > 0.08 else None}
        self.w.accounts.append(rec)
        self.acc_holder[aid] = holder
        return aid

    def tx(self, ts, typ, frm, to, amt, listing=None, interest=None, memo=None, allow_overdraft=False):
        amt = int(amt)
        if amt <= 0 or frm == to:
            return 0
        role_ext = frm.endswith("CARD") or "-XC" in frm
        if not role_ext and not allow_overdraft and self.bal[frm] < amt:
            return 0
        if interest is not None:
            interest = max(0, min(int(interest), amt))
        self.bal[frm] -= amt
        self.bal[to] += amt
        self.w.txs.append({"tx_id": self.w.txid(), "custodian_id": self.bank, "platform_id": self.pid, "ts": int(ts),
                           "type": typ, "from_account": frm, "to_account": to, "amount": amt, "currency": "CNY",
                           "listing_id": listing, "interest": interest, "memo": memo})
        m = (ts - T0) // (30 * DAY)
        self.month_stats[m][typ] += amt
        return amt

    def ts(self, d):
        return T0 + d * DAY + self.r.randint(8 * 3600_000, 21 * 3600_000)

    def closing_ts(self, d):
        """A listing closes (disbursed or refunded) after the day's subscriptions, which `ts` places before 21:00."""
        return T0 + d * DAY + self.r.randint(21 * 3600_000 + 60_000, 22 * 3600_000)

    def new_investor(self, d):
        n = len(self.investors)
        holder = "P-%s-I%04d" % (self.pid, n)
        opened = T0 + d * DAY
        a = self.acct("I%04d" % n, "INVESTOR", holder, "NATURAL_PERSON", opened)
        c = self.acct("I%04d-XCARD" % n, "EXTERNAL", holder, "NATURAL_PERSON", opened, custodian=None)
        self.investors.append(a)
        self.inv_card[a] = c
        # deposit sizes: heavy-tailed, rounded the way people type amounts
        yuan = math.exp(self.r.gauss(math.log(15000 * (1.8 if self.variant == "big_old" else 1)), 1.0))
        yuan = max(100, round(yuan, -2))
        self.tx(self.ts(d), "DEPOSIT", c, a, yuan * YUAN)
        return a

    def new_borrower(self, d, holder=None, hkind=None, card_holder=None):
        n = len(self.borrowers)
        if holder is None:
            if self.w.shared_borrowers and self.r.random() < 0.05:
                holder, hkind = self.r.choice(self.w.shared_borrowers)
            else:
                hkind = "LEGAL_PERSON" if self.r.random() < (0.5 if self.variant == "big_old" else 0.25) else "NATURAL_PERSON"
                holder = "B-%s-%04d" % (self.pid, n)
                if self.r.random() < 0.03:
                    self.w.shared_borrowers.append((holder, hkind))
        opened = T0 + d * DAY
        a = self.acct("B%04d" % n, "BORROWER", holder, hkind, opened)
        c = self.acct("B%04d-XCARD" % n, "EXTERNAL", card_holder or holder, hkind, opened, custodian=None)
        b = {"acct": a, "card": c, "kind": hkind, "holder": holder}
        self.borrowers.append(b)
        return b

    # ---------------------------------------------------------------- loans
    def list_loan(self, d, borrower, amount, rate, term, kind="LOAN", nominee=False, fictitious=False):
        lid = "%s-L%05d" % (self.pid, len(self.loans))
        self.w.listings.append({"listing_id": lid, "platform_id": self.pid, "kind": kind,
                                "borrower_account": borrower["acct"] if borrower else None,
                                "amount": int(amount), "annual_rate": rate, "term_days": term,
                                "listed_at": T0 + d * DAY})
        ln = {"id": lid, "b": borrower, "amount": int(amount), "rate": rate, "term": term, "listed": d,
              "deadline": d + self.r.randint(2, 7), "commit": {}, "funded": 0, "state": "open",
              "nominee": nominee, "fictitious": fictitious, "default_at": None, "late": 0,
              "principal_out": 0}
        self.loans.append(ln)
        return ln

    def loan_size(self, kind):
        cap = 200_000 if kind == "NATURAL_PERSON" else 1_000_000
        base = {"big_old": 300_000, "small_new": 40_000}.get(self.variant, 100_000)
        y = math.exp(self.r.gauss(math.log(base if kind == "LEGAL_PERSON" else base * 0.4), 0.7))
        y = min(cap * self.r.uniform(0.8, 1.0), max(5_000, round(y, -3)))
        return int(y) * YUAN

    def fund_open_loans(self, d):
        for ln in self.loans:
            if ln["state"] != "open":
                continue
            need = ln["amount"] - ln["funded"]
            cands = [a for a in self.investors if self.bal[a] > 100 * YUAN]
            self.r.shuffle(cands)
            for a in cands[: self.r.randint(1, 8)]:
                if need <= 0:
                    break
                amt = min(need, int(self.bal[a] * self.r.uniform(0.3, 1.0)) // 10_000 * 10_000)
                if amt <= 0:
                    continue
                if self.mode == "escrow":
                    amt = self.tx(self.ts(d), "INVEST", a, self.pool, amt, ln["id"])
                else:
                    self.bal[a] -= amt  # earmarked (frozen) until closing, not yet a ledger movement
                ln["commit"][a] = ln["commit"].get(a, 0) + amt
                ln["funded"] += amt
                need -= amt
            if ln["funded"] >= ln["amount"]:
                self.close_loan(d, ln)
            elif d >= ln["deadline"]:
                if ln["funded"] >= 0.9 * ln["amount"] and self.r.random() < 0.5:
                    self.close_loan(d, ln)          # borrower accepts a partially filled loan
                else:
                    self.fail_loan(d, ln)

    def close_loan(self, d, ln):
        t = self.closing_ts(d)
        b = ln["b"]
        if self.mode == "escrow":
            self.tx(t, "DISBURSE", self.pool, b["acct"], ln["funded"], ln["id"])
        else:
            for a, amt in ln["commit"].items():
                self.bal[a] += amt
                self.tx(t, "INVEST", a, b["acct"], amt, ln["id"])
        ln["state"] = "live"
        ln["principal_out"] = ln["funded"]
        ln["start"] = d
        fee = int(ln["funded"] * self.fee_rate)
        self.tx(t + 60_000, "FEE", b["acct"], self.own, fee, ln["id"], memo="平台服务费")
        if self.reserve:
            self.tx(t + 120_000, "FEE", b["acct"], self.resv, int(ln["funded"] * 0.01), ln["id"], memo="风险准备金")
        # borrower draws the money out to its card (or, for nominees, to whoever really uses it)
        dest = b["card"]
        if ln.get("nominee") and self.scheme == "self_financing":
            dest = self.ctrl_card if self.intensity in ("blatant", "medium") else self.shell_card
        lag = self.r.randint(0, 2) * DAY + 3600_000
        # not before the loan is there: a same-day draw at `ts` (before 21:00) would precede the closing (after it)
        self.pending.append((d + lag // DAY, "WITHDRAWAL", b["acct"], dest, None, t + lag))
        if self.r.random() < 0.3 and self.variant not in ("high_default",) and not ln["fictitious"]:
            ln["early_at"] = d + self.r.randint(30, ln["term"])
        if not ln["fictitious"] and self.r.random() < self.default_p:
            ln["default_at"] = d + self.r.randint(20, max(21, ln["term"]))
        if ln["fictitious"]:
            ln["default_at"] = d + 10 ** 6  # never defaults visibly, never repays

    def fail_loan(self, d, ln):
        ln["state"] = "failed"
        t = self.closing_ts(d)
        for a, amt in ln["commit"].items():
            if self.mode == "escrow":
                self.tx(t, "REFUND", self.pool, a, amt, ln["id"], memo="流标退款")
            else:
                self.bal[a] += amt

    def service_loans(self, d):
        for ln in self.loans:
            if ln["state"] != "live" or ln["fictitious"]:
                continue
            age = d - ln["start"]
            due_principal = age >= ln["term"] or ("early_at" in ln and d >= ln["early_at"])
            if ln["default_at"] is not None and d >= ln["default_at"]:
                ln["state"] = "default"
                if self.reserve and self.scheme != "reserve_misuse":
                    self.reserve_cover(d, ln)
                continue
            if age == 0 or (age % 30 != ln["late"] % 30 and not due_principal):
                continue
            if age % 30 == 0 and self.r.random() < 0.1 and ln["late"] == 0:
                ln["late"] = self.r.randint(3, 20)   # pays this instalment late
                continue
            ln["late"] = 0
            interest = int(ln["principal_out"] * ln["rate"] * min(30, age) / 365)
            principal = ln["principal_out"] if due_principal else 0
            if not due_principal and self.r.random() < 0.05:
                interest //= 2                       # partial instalment
            self.pay(d, ln, principal, interest)
            if due_principal:
                ln["state"] = "repaid"

    def pay(self, d, ln, principal, interest):
        t = self.ts(d)
        b = ln["b"]
        total = principal + interest
        src = b["card"]
        if ln.get("nominee") and self.scheme == "self_financing":
            src = self.ctrl_card if self.intensity in ("blatant", "medium") else self.shell_card
        self.tx(t, "DEPOSIT", src, b["acct"], total, memo="还款充值")
        shares = ln["commit"]
        tot = sum(shares.values()) or 1
        if self.mode == "escrow":
            self.tx(t + 60_000, "REPAY", b["acct"], self.pool, total, ln["id"], interest=interest)
            for a, s in shares.items():
                self.tx(t + 120_000, "PAYOUT", self.pool, a, total * s // tot, ln["id"],
                        interest=interest * s // tot)
        else:
            for a, s in shares.items():
                self.tx(t + 60_000, "REPAY", b["acct"], a, total * s // tot, ln["id"], interest=interest * s // tot)
        if self.interest_cut:
            for a, s in shares.items():
                self.tx(t + 180_000, "FEE", a, self.own, int(interest * s // tot * self.interest_cut), ln["id"],
                        memo="利息管理费")
        ln["principal_out"] -= principal

    def reserve_cover(self, d, ln):
        t = self.ts(d + self.r.randint(1, 10))
        shares = ln["commit"]
        tot = sum(shares.values()) or 1
        avail = self.bal[self.resv]
        cover = min(avail, ln["principal_out"])
        for a, s in shares.items():
            self.tx(t, "PAYOUT", self.resv, a, cover * s // tot, ln["id"], interest=0, memo="风险准备金垫付")

    # ---------------------------------------------------------------- investors' own behaviour
    def investor_day(self, d):
        for a in self.investors:
            if self.bal[a] > 0 and self.r.random() < 0.015:
                amt = int(self.bal[a] * self.r.choice([0.3, 0.5, 1.0]))
                self.tx(self.ts(d), "WITHDRAWAL", a, self.inv_card[a], amt)
            elif self.r.random() < 0.01:
                yuan = round(math.exp(self.r.gauss(math.log(8000), 0.8)), -2)
                self.tx(self.ts(d), "DEPOSIT", self.inv_card[a], a, max(100, yuan) * YUAN)

    def run_pending(self, d):
        keep = []
        for item in self.pending:
            if item[0] <= d:
                _, typ, frm, to, amt = item[:5]
                not_before = item[5] if len(item) > 5 else 0
                amt = self.bal[frm] if amt is None else min(amt, self.bal[frm])
                self.tx(max(self.ts(d), not_before), typ, frm, to, amt)
            else:
                keep.append(item)
        self.pending = keep

    # ---------------------------------------------------------------- schemes
    def scheme_day(self, d):
        s, it, t = self.scheme, self.intensity, self.ts(d)
        if s == "misappropriation":
            period = {"blatant": 6, "medium": 12, "subtle": 25}[it]
            if d % period == period - 1:
                src = self.pool if self.mode == "escrow" else self.r.choice(self.investors or [self.pool])
                frac = {"blatant": 0.35, "medium": 0.12, "subtle": 0.04}[it]
                amt = int(self.bal[src] * frac)
                if it == "blatant":
                    self.tx(t, "TRANSFER", src, self.ctrl_card, amt, memo="往来款")
                elif it == "medium":
                    self.tx(t, "TRANSFER", src, self.own, amt, memo="资金调拨")
                    self.pending.append((d + 2, "WITHDRAWAL", self.own, self.own_card, None))
                else:
                    # disguised as a fee, partly returned before the month's reconciliation
                    got = self.tx(t, "FEE", src, self.own, amt, memo="技术服务费")
                    if got and self.r.random() < 0.5:
                        self.pending.append((d + 5, "TRANSFER", self.own, src, got // 2))
        elif s == "reserve_misuse":
            if d % {"blatant": 10, "medium": 20, "subtle": 35}[it] == 9 and self.bal[self.resv] > 0:
                frac = {"blatant": 0.8, "medium": 0.4, "subtle": 0.25}[it]
                amt = int(self.bal[self.resv] * frac)
                if it == "blatant":
                    self.tx(t, "TRANSFER", self.resv, self.ctrl_card, amt, memo="借用")
                elif it == "medium":
                    self.tx(t, "TRANSFER", self.resv, self.own, amt, memo="调拨")
                else:
                    # reserve tops up interest on performing loans: hidden guarantee of yield
                    live = [ln for ln in self.loans if ln["state"] == "live"]
                    if live:
                        ln = self.r.choice(live)
                        tot = sum(ln["commit"].values()) or 1
                        for a, sh in ln["commit"].items():
                            self.tx(t, "PAYOUT", self.resv, a, amt * sh // tot, ln["id"], interest=amt * sh // tot,
                                    memo="加息补贴")
        elif s in ("fund_pool", "ponzi"):
            self.product_day(d)

    def product_day(self, d):
        """Pooled short-term products (fund pool) or high-yield products paid from new money (Ponzi)."""
        s, it = self.scheme, self.intensity
        share = {"blatant": 0.9, "medium": 0.45, "subtle": 0.12}[it] if s == "fund_pool" else 1.0
        if s == "ponzi":
            yld = self.adv
            terms = [30, 90, 180]
        else:
            yld = round(self.r.uniform(0.075, 0.095), 3)
            terms = [30, 60, 90]
        # sell products to investors with idle money
        if d % 3 == 0 and (self.stop_payouts_day is None or d < self.stop_payouts_day):
            term = self.r.choice(terms)
            lid = "%s-P%05d" % (self.pid, len(self.w.listings))
            buyers = [a for a in self.investors if self.bal[a] > 1000 * YUAN and self.r.random() < share]
            if buyers:
                tot = 0
                for a in buyers:
                    amt = self.bal[a] // 100_000 * 100_000
                    got = self.tx(self.ts(d), "INVEST", a, self.pool, amt, lid)
                    self.products.append({"lid": lid, "inv": a, "amt": got, "due": d + term, "y": yld, "term": term})
                    tot += got
                self.w.listings.append({"listing_id": lid, "platform_id": self.pid, "kind": "PRODUCT",
                                        "borrower_account": None, "amount": max(tot, 1), "annual_rate": yld,
                                        "term_days": term, "listed_at": T0 + d * DAY})
        # deploy pooled money into long loans with no one-to-one correspondence
        if s == "fund_pool" and self.bal[self.pool] > 200_000 * YUAN and d % 4 == 1:
            b = self.new_borrower(d)
            amt = min(self.bal[self.pool] * 7 // 10, self.loan_size(b["kind"]) * 2)
            ln = self.list_loan(d, b, amt, round(self.r.uniform(0.11, 0.15), 3), self.r.choice([270, 360, 540]))
            self.tx(self.ts(d), "DISBURSE", self.pool, b["acct"], amt, ln["id"])
            ln.update(state="live", start=d, principal_out=amt, funded=amt, commit={self.pool: amt}, pooled=True)
            self.pending.append((d + 1, "WITHDRAWAL", b["acct"], b["card"], None))
        if s == "ponzi" and d % 5 == 2 and self.bal[self.pool] > 100_000 * YUAN:
            # money leaves to "projects" that are fronts; some even real but at yields below the promise
            fict = self.r.random() < {"blatant": 0.9, "medium": 0.6, "subtle": 0.2}[it]
            b = self.new_borrower(d, card_holder=self.related[0] if fict and it == "blatant" else None)
            amt = self.bal[self.pool] * (6 if it == "blatant" else 4) // 10
            rate = round(self.r.uniform(0.08, 0.11), 3)
            ln = self.list_loan(d, b, amt, rate, self.r.choice([180, 360]), fictitious=fict)
            self.tx(self.ts(d), "DISBURSE", self.pool, b["acct"], amt, ln["id"])
            ln.update(state="live", start=d, principal_out=amt, funded=amt, commit={self.pool: amt}, pooled=True)
            self.pending.append((d + 1, "WITHDRAWAL", b["acct"], b["card"], None))
            if it == "subtle":
                # a subsidy from own funds keeps the promised yield
                self.tx(self.ts(d), "DEPOSIT", self.own_card, self.own, amt // 50, memo="自有资金")
        # maturing products: pay principal + promised interest from whatever the pool holds
        for p in self.products:
            if p.get("paid") or p["due"] > d:
                continue
            if self.stop_payouts_day is not None and d >= self.stop_payouts_day:
                self.complaints += 1
                continue
            interest = int(p["amt"] * p["y"] * p["term"] / 365)
            if s == "ponzi" and self.intensity == "subtle" and self.bal[self.pool] < p["amt"] + interest:
                self.tx(self.ts(d), "TRANSFER", self.own, self.pool, p["amt"] + interest - self.bal[self.pool],
                        memo="平台贴息")
            got = self.tx(self.ts(d), "PAYOUT", self.pool, p["inv"], p["amt"] + interest, p["lid"], interest=interest)
            if got:
                p["paid"] = True
            else:
                self.complaints += 1
        # pooled loans repay into the pool (fund pool: real borrowers mostly pay)
        for ln in self.loans:
            if ln.get("pooled") and ln["state"] == "live" and not ln["fictitious"]:
                age = d - ln["start"]
                if age > 0 and age % 30 == 0:
                    i = int(ln["principal_out"] * ln["rate"] * 30 / 365)
                    self.tx(self.ts(d), "DEPOSIT", ln["b"]["card"], ln["b"]["acct"], i)
                    self.tx(self.ts(d) + 60_000, "REPAY", ln["b"]["acct"], self.pool, i, ln["id"], interest=i)

    # ---------------------------------------------------------------- day loop
    def run(self):
        self.pending = []
        days = self.w.days
        if self.scheme == "ponzi":
            self.doomed = self.intensity != "subtle" or self.r.random() < 0.5
            if self.doomed:
                self.stop_payouts_day = days - self.r.randint(10, 35)
        n0 = {"big_old": 120, "small_new": 3}.get(self.variant, self.r.randint(15, 45))
        for _ in range(n0):
            self.new_investor(0)
        nominee_share = {"blatant": 0.7, "medium": 0.4, "subtle": 0.15}.get(self.intensity, 0) \
            if self.scheme == "self_financing" else 0
        if self.scheme == "self_financing":
            self.nominees = []
            for k in range(self.r.randint(2, 5)):
                holder = self.related[0] if self.intensity == "blatant" and k == 0 else "NM-%s-%d" % (self.pid, k)
                self.nominees.append(self.new_borrower(0, holder=holder, hkind="NATURAL_PERSON"))
        for d in range(days):
            season = 1.0
            if self.seasonal:
                season = 1.0 + 0.7 * math.sin(2 * math.pi * d / 60.0)
            growth = 1.0
            if self.scheme == "ponzi":
                growth = math.exp(d / {"blatant": 45, "medium": 70, "subtle": 140}[self.intensity])
                if self.stop_payouts_day is not None and d >= self.stop_payouts_day:
                    growth = 0.1
            winding = self.wind_down_day is not None and d >= self.wind_down_day
            if not winding:
                lam = self.inv_rate * season * growth
                for _ in range(self._poisson(lam)):
                    self.new_investor(d)
                if self.r.random() < season / self.loan_every and self.scheme != "ponzi" and \
                        not (self.scheme == "fund_pool" and self.intensity == "blatant"):
                    if nominee_share and self.r.random() < nominee_share:
                        b, nom = self.r.choice(self.nominees), True
                    else:
                        b, nom = (self.new_borrower(d) if self.r.random() < 0.8 or not self.borrowers
                                  else self.r.choice(self.borrowers)), False
                        if self.scheme == "self_financing":
                            nom = b in self.nominees
                    amt = self.loan_size(b["kind"])
                    if nom:
                        amt = int(self.r.uniform(0.9, 0.995) * 200_000) // 1000 * 1000 * YUAN
                    term = self.r.choice([30, 60, 90, 180, 360] if self.variant != "big_old" else [90, 180, 360, 720])
                    rate = round(self.r.uniform(self.rate_lo, self.rate_hi), 3)
                    self.list_loan(d, b, amt, rate, term, nominee=nom)
            else:
                # honest wind-down: no new loans, investors take their money home
                for a in self.investors:
                    if self.bal[a] > 0 and self.r.random() < 0.2:
                        self.tx(self.ts(d), "WITHDRAWAL", a, self.inv_card[a], self.bal[a])
            self.fund_open_loans(d)
            self.service_loans(d)
            if self.scheme:
                self.scheme_day(d)
            self.run_pending(d)
            self.investor_day(d)
            if self.pid == "X":
                pass

    def _poisson(self, lam):
        L, k, p = math.exp(-lam), 0, 1.0
        while True:
            p *= self.r.random()
            if p < L:
                return k
            k += 1

    # ---------------------------------------------------------------- disclosures
    def disclose(self):
        """Monthly operating disclosures computed from the ledger, with the platform's own honesty."""
        lies = self.scheme is not None and self.intensity != "blatant"
        n_months = self.w.days // 30
        for m in range(-3, n_months):
            if self.r.random() < (0.12 if self.variant != "small_new" else 0.3):
                continue  # missed disclosure
            pe = T0 + (m + 1) * 30 * DAY - 1
            d_end = (m + 1) * 30
            if m < 0:
                # history before custody began: only what the platform says
                vol = int(self.size * 3e6 * YUAN * self.r.uniform(0.7, 1.3))
                out = vol * 3
                inv_n, bor_n = int(40 * self.size), int(10 * self.size)
            else:
                st = self.month_stats[m]
                vol = st["INVEST"] + (st["DISBURSE"] if self.mode == "direct" else 0)
                live = [ln for ln in self.loans if ln["state"] in ("live", "default") and ln.get("start", 1e9) <= d_end]
                out = sum(ln["principal_out"] for ln in live)
                inv_n = len(self.investors)
                bor_n = len({ln["b"]["holder"] for ln in live if ln["b"]})
            live = [ln for ln in self.loans if ln["state"] in ("live", "default")]
            outs = sorted([ln["principal_out"] for ln in live], reverse=True)
            top10 = sum(outs[:10]) / sum(outs) if outs and sum(outs) else None
            overdue = sum(ln["principal_out"] for ln in live if ln["state"] == "default") / max(1, out)
            rel = sum(ln["principal_out"] for ln in live if ln.get("nominee"))
            if lies:
                rel = 0 if self.r.random() < 0.7 else None
                overdue = min(overdue, 0.01)
            rates = [ln["rate"] for ln in self.loans if not ln.get("pooled")] or [self.adv or 0.1]
            yld = sum(rates) / len(rates) * (1 - self.interest_cut)
            if self.scheme in ("ponzi", "fund_pool"):
                yld = self.adv or 0.085
            complaints = self.complaints if m == n_months - 1 else int(self.complaints * 0.3)
            rnd = lambda v: None if v is None else (int(round(v / 1e6)) * 1_000_000 if self.r.random() < 0.5 else int(v))
            rec = {"platform_id": self.pid, "period_end": pe, "investors": inv_n, "borrowers": bor_n,
                   "volume": rnd(vol), "outstanding": rnd(out), "avg_annual_yield": round(yld, 4),
                   "yield_by_term": {"1-3m": round(yld - 0.005, 4), "3-12m": round(yld + 0.005, 4)} if self.r.random() < 0.6 else {},
                   "avg_term_days": float(sum(ln["term"] for ln in self.loans) / max(1, len(self.loans))) if self.loans else None,
                   "top10_borrower_share": None if top10 is None else round(top10, 3),
                   "top10_investor_share": round(self.r.uniform(0.1, 0.4), 3) if self.r.random() < 0.7 else None,
                   "overdue_rate": round(min(1.0, overdue), 4), "related_party_outstanding": rel,
                   "complaints": complaints if self.r.random() < 0.8 else None}
            for k in ("avg_term_days", "top10_borrower_share", "overdue_rate", "related_party_outstanding"):
                if self.r.random() < 0.1:
                    rec[k] = None
            self.w.disclosures.append(rec)


class PayInst(Plat):
    """A third-party payment institution: client reserve (备付金) accounts, merchant settlement."""

    def run(self):
        self.pending = []
        nbanks = 1
        if self.scheme == "reserve_misuse" and self.intensity != "subtle":
            nbanks = 3
        self.cr = [self.acct("CR%d" % k, "CLIENT_RESERVE", "H-%s-CO" % self.pid, "LEGAL_PERSON", T0 - DAY,
                             custodian=BANKS[(BANKS.index(self.bank) + k) % len(BANKS)]) for k in range(nbanks)]
        payers = [self.acct("U%03d-XCARD" % k, "EXTERNAL", "U-%s-%03d" % (self.pid, k), "NATURAL_PERSON", T0 - DAY,
                            custodian=None) for k in range(30)]
        merchants = [self.acct("M%03d-XCARD" % k, "EXTERNAL", "M-%s-%03d" % (self.pid, k), "LEGAL_PERSON", T0 - DAY,
                               custodian=None) for k in range(8)]
        fee = self.r.choice([0.003, 0.0038, 0.006])
        for d in range(self.w.days):
            day_in = 0
            for _ in range(self._poisson(12 * self.size)):
                amt = max(1, int(math.exp(self.r.gauss(math.log(300), 1.2)))) * YUAN
                cr = self.r.choice(self.cr)
                day_in += self.tx(self.ts(d), "DEPOSIT", self.r.choice(payers), cr, amt, memo="消费")
            # T+1 settlement to merchants, fee to own account
            for cr in self.cr:
                bal = self.bal[cr]
                if bal <= 0:
                    continue
                settle = int(bal * 0.97)
                self.tx(self.ts(d) + 3600_000, "FEE", cr, self.own, int(settle * fee), memo="手续费")
                per = settle // len(merchants)
                for mm in merchants:
                    if self.r.random() < 0.6:
                        self.tx(self.ts(d) + 7200_000, "WITHDRAWAL", cr, mm, per, memo="商户结算")
            if self.scheme == "reserve_misuse":
                t = self.ts(d)
                if nbanks > 1 and d % 2 == 0:
                    # clearing between its own reserve accounts at different banks (变相跨行清算)
                    a, b = self.r.sample(self.cr, 2)
                    self.tx(t, "TRANSFER", a, b, int(self.bal[a] * 0.5), memo="头寸调拨")
                if d % {"blatant": 7, "medium": 15, "subtle": 30}[self.intensity] == 3:
                    frac = {"blatant": 0.5, "medium": 0.2, "subtle": 0.06}[self.intensity]
                    cr = self.cr[0]
                    self.tx(t, "TRANSFER", cr, self.own, int(self.bal[cr] * frac), memo="备付金调拨")
            self.run_pending(d)


def disclosure_only(w: World, pid, doomed, subtle):
    """A platform known only by its monthly disclosures (no custody flows)."""
    r = w.r
    n = 12 + w.days // 30
    vol = r.uniform(2e6, 6e7) * YUAN
    yld = r.uniform(0.14, 0.20) if doomed and not subtle else r.uniform(0.115, 0.14) if doomed else r.uniform(0.075, 0.115)
    inv = r.randint(300, 20000)
    over = r.uniform(0.0, 0.03)
    top10 = r.uniform(0.05, 0.5) if not doomed else r.uniform(0.3, 0.9)
    collapse = n - r.randint(1, 4) if doomed else None
    term = r.choice([60, 90, 120, 180, 270])
    for m in range(n):
        if r.random() < (0.1 if not doomed else 0.2):
            continue
        pe = T0 + (m - 11) * 30 * DAY - 1
        g = 1.0 + (0.08 if doomed else r.uniform(-0.02, 0.04))
        vol *= g * r.uniform(0.85, 1.15)
        out = vol * term / 30
        cmpl = r.randint(0, 3)
        rel = 0
        if doomed:
            if collapse is not None and m >= collapse:
                vol *= 0.4
                over = min(0.9, over + r.uniform(0.05, 0.2))
                cmpl += r.randint(5, 60)
                out = out * 1.3
            rel = int(out * r.uniform(0.05, 0.3)) if r.random() < (0.25 if subtle else 0.5) else 0
        inv = int(inv * (1.06 if doomed else r.uniform(0.98, 1.03)))
        rec = {"platform_id": pid, "period_end": pe, "investors": inv, "borrowers": max(1, int(inv * r.uniform(0.02, 0.2))),
               "volume": int(round(vol / 1e6)) * 1_000_000, "outstanding": int(round(out / 1e6)) * 1_000_000,
               "avg_annual_yield": round(yld + r.uniform(-0.003, 0.003), 4),
               "yield_by_term": {"<=3m": round(yld - 0.01, 4), ">3m": round(yld + 0.01, 4)} if r.random() < 0.5 else {},
               "avg_term_days": float(term + r.randint(-10, 10)),
               "top10_borrower_share": round(min(1, top10 * r.uniform(0.9, 1.1)), 3),
               "top10_investor_share": round(r.uniform(0.05, 0.4), 3),
               "overdue_rate": round(over if not (doomed and m < (collapse or n)) else min(over, 0.005), 4),
               "related_party_outstanding": rel, "complaints": cmpl}
        for k in ("volume", "avg_term_days", "top10_investor_share", "related_party_outstanding", "complaints"):
            if r.random() < 0.12:
                rec[k] = None
        w.disclosures.append(rec)
    return collapse


def platform_record(w, pid, kind, licence, custodian, adv, related, launched, name, scope):
    return {"platform_id": pid, "name": name, "kind": kind, "licence": licence,
            "jurisdiction": w.r.choice(JURIS), "custodian_id": custodian, "business_scope": scope,
            "background": w.r.choice([None, "PRIVATE", "PRIVATE", "PRIVATE", "VC_BACKED", "LISTED", "STATE_OWNED"]),
            "advertised_annual_yield": adv, "related_parties": related, "launched_at": launched,
            "updated_at": T0 - DAY}


NAMES = ["鑫", "融", "盈", "汇", "通", "达", "信", "宝", "金", "安", "泰", "丰", "利", "恒", "诚", "联", "易", "贷"]
SCOPES = ["网络借贷信息中介服务", "互联网信息服务；网络借贷信息中介", "投资管理；资产管理；理财咨询",
          "信息技术服务；电子商务", "股权众筹融资信息服务", "支付业务（互联网支付）", "企业管理咨询；商务信息咨询"]


def build(seed=7, n_platforms=200, days=150):
    w = World(seed, days)
    r = w.r
    lawful_variants = ["p2p_regular"] * 5 + ["big_old", "small_new", "seasonal", "winding_down", "high_default"]
    specs = []
    n_disc = int(n_platforms * 0.2)
    n_pay = int(n_platforms * 0.06)
    n_custody = n_platforms - n_disc - n_pay
    n_scheme = int(n_custody * 0.4)
    schemes = ["fund_pool", "misappropriation", "self_financing", "ponzi", "reserve_misuse"]
    for i in range(n_custody):
        if i < n_scheme:
            specs.append(("custody", None, schemes[i % 5], ["blatant", "medium", "subtle"][(i // 5) % 3]))
        else:
            specs.append(("custody", lawful_variants[i % len(lawful_variants)], None, None))
    for i in range(n_pay):
        specs.append(("payment", "payment_regular", *(("reserve_misuse", ["blatant", "medium", "subtle"][i % 3])
                                                       if i % 2 == 0 else (None, None))))
    for i in range(n_disc):
        specs.append(("disc", None, None, None))
    r.shuffle(specs)
    for k, (seg, variant, scheme, intensity) in enumerate(specs):
        pid = "IW%03d" % k
        name = r.choice(NAMES) + r.choice(NAMES) + r.choice(["网贷", "金服", "财富", "在线", "科技", "宝"])
        if seg == "disc":
            doomed = r.random() < 0.45
            subtle = doomed and r.random() < 0.4
            collapse = disclosure_only(w, pid, doomed, subtle)
            lic = r.choice(["UNLICENSED", "LICENSED", "SCOPE_MISMATCH"]) if doomed else r.choice(["UNLICENSED", "LICENSED", "LICENSED"])
            w.platforms.append(platform_record(w, pid, r.choice(["P2P_LENDING", "P2P_LENDING", "ASSET_MANAGEMENT", "PRIVATE_FINANCE"]),
                                               lic, None, None if r.random() < 0.5 else round(r.uniform(0.08, 0.18), 3),
                                               ["CTRL-%s" % pid], T0 - DAY * r.randint(200, 900), name + "理财" if doomed and r.random() < 0.5 else name,
                                               r.choice(SCOPES)))
            w.labels[pid] = {"segment": "disclosure_only", "truth": "scheme" if doomed else "lawful",
                             "variant": ("doomed_subtle" if subtle else "doomed") if doomed else "healthy",
                             "scheme": None, "intensity": None, "doomed": doomed}
            continue
        kind = "THIRD_PARTY_PAYMENT" if seg == "payment" else (
            "ASSET_MANAGEMENT" if scheme == "fund_pool" and r.random() < 0.5 else
            "EQUITY_CROWDFUNDING" if scheme is None and r.random() < 0.05 else "P2P_LENDING")
        cls = PayInst if seg == "payment" else Plat
        p = cls(w, pid, variant or "p2p_regular", scheme, intensity, kind)
        p.run()
        if seg != "payment":
            p.disclose()
        # declared related parties: the controller and a shareholder; most schemes declare them honestly
        related = list(p.related)
        lic = r.choice(["LICENSED", "LICENSED", "UNLICENSED", "SCOPE_MISMATCH"]) if scheme else r.choice(["LICENSED"] * 4 + ["UNLICENSED"])
        w.platforms.append(platform_record(w, pid, kind, lic, p.bank, p.adv, related, p.launched, name,
                                           "支付业务（互联网支付）" if seg == "payment" else r.choice(SCOPES[:3] + SCOPES[5:])))
        w.labels[pid] = {"segment": "payment" if seg == "payment" else "custody",
                         "truth": "scheme" if scheme else "lawful",
                         "variant": variant or ("payment_" + (scheme or "regular") if seg == "payment" else scheme),
                         "scheme": scheme, "intensity": intensity, "doomed": bool(getattr(p, "doomed", False))}
    # outcomes for about 40 % of platforms (what a PBoC branch would have on record later)
    end = T0 + days * DAY - DAY
    for pid, lab in w.labels.items():
        if r.random() > 0.4:
            continue
        if lab["truth"] == "lawful":
            st = "CLOSED" if lab["variant"] == "winding_down" else r.choice(["NORMAL"] * 6 + ["RECTIFYING"])
        elif lab.get("doomed") or lab["intensity"] == "blatant":
            st = r.choice(["WITHDRAWAL_DIFFICULTY", "POLICE_INVESTIGATION", "RUN_AWAY", "SUSPENDED"])
        else:
            st = r.choice(["RECTIFYING", "SUSPENDED", "NORMAL", "CLOSED"])
        w.outcomes.append({"platform_id": pid, "status": st, "decided_at": end - DAY * r.randint(0, 10),
                           "source": r.choice(["金融办", "人行中心支行", "公安局经侦支队", "新闻报道"]), "note": None})
    return w


def write(w: World, out):
    os.makedirs(out, exist_ok=True)
    sc = load_schemas()
    w.txs.sort(key=lambda t: t["ts"])
    w.listings.sort(key=lambda t: t["listed_at"])
    w.accounts.sort(key=lambda t: t["opened_at"])
    w.disclosures.sort(key=lambda t: t["period_end"])
    w.outcomes.sort(key=lambda t: t["decided_at"])
    for stem, recs in [("platforms", w.platforms), ("accounts", w.accounts), ("listings", w.listings),
                       ("transactions", w.txs), ("disclosures", w.disclosures), ("outcomes", w.outcomes)]:
        with open(os.path.join(out, stem + ".avro"), "wb") as f:
            fastavro.writer(f, sc[stem[:-1]], recs, codec="deflate")
    json.dump(w.labels, open(os.path.join(out, "labels.json"), "w"), ensure_ascii=False, indent=1)
    print("platforms %d accounts %d listings %d transactions %d disclosures %d outcomes %d" % (
        len(w.platforms), len(w.accounts), len(w.listings), len(w.txs), len(w.disclosures), len(w.outcomes)))


# -------------------------------------------------------------------- evaluation
RIGHT = {"fund_pool": {"fund_pool", "maturity_mismatch"},
         "misappropriation": {"misappropriation", "custody_shortfall"},
         "self_financing": {"self_financing", "pass_through", "nominee_borrowing", "cross_platform_insider"},
         "ponzi": {"ponzi_payout", "excess_yield", "subsidy"},
         "reserve_misuse": {"reserve_misuse", "cross_bank_clearing"}}


def auc(pos, neg):
    if not pos or not neg:
        return float("nan")
    s = 0.0
    for a in pos:
        for b in neg:
            s += 1.0 if a > b else 0.5 if a == b else 0.0
    return s / (len(pos) * len(neg))


def evaluate(dirpath, report):
    """Figures of a fundwatch replay report against labels.json."""
    labels = json.load(open(os.path.join(dirpath, "labels.json")))
    rep = {p["platform_id"]: p for p in json.load(open(report))["platforms"]}
    out = {"missing_from_report": sorted(set(labels) - set(rep))}
    sc = lambda pid: rep[pid]["score"] if pid in rep else 0.0
    dets = lambda pid: {f["detector"] for f in rep.get(pid, {}).get("findings", [])}
    law = [p for p, l in labels.items() if l["truth"] == "lawful"]
    sch = [p for p, l in labels.items() if l["truth"] == "scheme"]
    for seg in ["all", "custody", "payment", "disclosure_only"]:
        inseg = lambda p: seg == "all" or labels[p]["segment"] == seg
        L = [sc(p) for p in law if inseg(p)]
        S = [sc(p) for p in sch if inseg(p)]
        out["auc_%s" % seg] = (round(auc(S, L), 3), len(S), len(L))
    Lc = [sc(p) for p in law if labels[p]["segment"] in ("custody", "payment")]
    for s in RIGHT:
        S = [sc(p) for p in sch if labels[p]["scheme"] == s]
        out["auc_%s_vs_lawful_custody" % s] = (round(auc(S, Lc), 3), len(S))
        for it in ["blatant", "medium", "subtle"]:
            ps = [p for p in sch if labels[p]["scheme"] == s and labels[p]["intensity"] == it]
            right = [p for p in ps if dets(p) & RIGHT[s]]
            out.setdefault("right_detector", {})["%s/%s" % (s, it)] = "%d/%d" % (len(right), len(ps))
    hi = lambda p: rep.get(p, {}).get("tier") in ("HIGH", "CRITICAL")
    byv = defaultdict(list)
    for p in law:
        byv[labels[p]["segment"] + ":" + labels[p]["variant"]].append(p)
    out["lawful_high_or_critical"] = "%d/%d" % (sum(map(hi, law)), len(law))
    out["lawful_high_by_variant"] = {v: "%d/%d" % (sum(map(hi, ps)), len(ps)) for v, ps in sorted(byv.items())}
    byv = defaultdict(list)
    for p in sch:
        l = labels[p]
        byv["%s:%s/%s" % (l["segment"], l["scheme"] or l["variant"], l["intensity"])].append(p)
    out["scheme_tiers"] = {v: " ".join("%s:%s" % (p, rep.get(p, {}).get("tier", "-")[:4]) for p in ps)
                           for v, ps in sorted(byv.items())}
    fa = defaultdict(int)
    for p in law:
        for d in dets(p):
            fa[d] += 1
    out["detectors_on_lawful"] = dict(sorted(fa.items(), key=lambda kv: -kv[1]))
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--platforms", type=int, default=200)
    ap.add_argument("--days", type=int, default=150)
    ap.add_argument("--evaluate", help="a world directory; with --report, print the figures")
    ap.add_argument("--report")
    a = ap.parse_args()
    if a.evaluate:
        print(json.dumps(evaluate(a.evaluate, a.report), ensure_ascii=False, indent=1))
        sys.exit(0)
    w = build(a.seed, a.platforms, a.days)
    write(w, a.out)
