"""Borrowers as the registry and the money show them: who a holder is, what it owes, on how many platforms.

Art. 17 of 网络借贷信息中介机构业务活动管理暂行办法 (CBRC and others, August 2016) caps one borrower's
outstanding borrowing: a natural person at most CNY 200,000 on one platform and CNY 1,000,000 across
platforms; a legal person or other organisation at most CNY 1,000,000 and CNY 5,000,000. "At most": a
balance exactly at a cap is within it. A breach is a breach of that article, not proof of self-financing
(自融), so the finding stays MEDIUM and says so; self_financing.py decides what the money proves. A borrower
above the cap across platforms is a fact about the borrower: the finding is MEDIUM on a platform above its own
per-platform cap or holding the largest share of the borrower's debt (the lender that took it over, as far as a
stock can tell), LOW on the others, which lent within their own cap and learn the total here.

Outstanding principal of a borrower account = loans in (DISBURSE, or INVEST, into it from a custody account)
less principal out (REPAY less the interest it carries, and REFUND), from the ledger's lifetime totals per
edge: no per-holder history is kept. The contract has no write-off record, so a loan in default stays
outstanding, as the debt does in law. "Across platforms" is over every platform the ledger knows; a
platform outside custody is invisible, so the sum can only be too low, never too high.

The holder's kind (the caps differ): the registry's `holder_kind` on the holder's accounts. Accounts that
disagree, or none that says, leave the holder id: an 18-character resident identity number (GB 11643-1999,
birth date and ISO 7064 MOD 11-2 check digit) is a natural person, an 18-character unified social credit code
(GB 32100-2015, mod-31 check character) a legal person, when exactly one of the two checks passes. Otherwise
the legal-person caps apply (the higher ones: never accuse on a guess) and the evidence says so.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import networkx as nx

from detectors.base import Finding, PlatformView, detector, yuan_en, yuan_zh
from graph.ledger import TYPE_INDEX, Ledger

__all__ = ["NATURAL", "LEGAL", "CAPS", "Borrowing", "borrowing", "holder_kind", "kind_from_id", "loans_in",
           "outstanding", "view_borrowing", "PLATFORM_SIDE", "platform_side_holders", "borrowing_cap"]

NATURAL, LEGAL = "NATURAL_PERSON", "LEGAL_PERSON"
# art. 17: (one platform, across platforms), fen
CAPS: dict[str, tuple[int, int]] = {NATURAL: (20_000_000, 100_000_000), LEGAL: (100_000_000, 500_000_000)}
KIND_ZH = {NATURAL: "自然人", LEGAL: "法人"}
KIND_EN = {NATURAL: "natural person", LEGAL: "legal person"}
# how the kind was known: the registry, the holder id's format, or not at all (legal-person caps assumed)
BASIS_ZH = {"registry": "登记", "holder_id": "据证件号判断", "assumed": "类型未登记，按法人上限",
            "conflicting": "登记类型不一致，按法人上限"}
BASIS_EN = {"registry": "registered", "holder_id": "from its id number", "assumed": "kind not registered, "
            "legal-person caps applied", "conflicting": "registry disagrees, legal-person caps applied"}
PLATFORM_SIDE = ("PLATFORM_OWN", "CUSTODY_POOL", "RISK_RESERVE", "CLIENT_RESERVE")  # accounts the platform holds
_LOAN, _INVEST, _REPAY, _REFUND = TYPE_INDEX["DISBURSE"], TYPE_INDEX["INVEST"], TYPE_INDEX["REPAY"], TYPE_INDEX["REFUND"]
MAX_HOLDERS = 10  # holders named in one finding's evidence
MAX_TX = 60  # tx ids in one finding's evidence


# ---- who the holder is --------------------------------------------------------------------------------
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_USCC = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def _resident_id(s: str) -> bool:
    """GB 11643-1999: 6-digit region, 8-digit birth date, 3-digit sequence, MOD 11-2 check (0-9 or X)."""
    if len(s) != 18 or not s[:17].isascii() or not s[:17].isdigit() or s[17] not in "0123456789X":
        return False
    try:
        born = datetime.date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        return False
    if born.year < 1900:
        return False
    return _ID_CHECK[sum(int(c) * w for c, w in zip(s, _ID_WEIGHTS)) % 11] == s[17]


def _credit_code(s: str) -> bool:
    """GB 32100-2015: 18 characters of 0-9 and 21 letters, a 6-digit region at 3-8, a mod-31 check character."""
    if len(s) != 18 or any(c not in _USCC for c in s) or not s[2:8].isdigit():
        return False
    total = sum(_USCC.index(c) * w for c, w in zip(s, _USCC_WEIGHTS))
    return _USCC[(31 - total % 31) % 31] == s[17]


def kind_from_id(holder_id: str) -> str | None:
    """NATURAL or LEGAL when the id is a valid number of exactly one of the two national formats, else None."""
    s = holder_id.strip().upper()
    person, company = _resident_id(s), _credit_code(s)
    if person != company:
        return NATURAL if person else LEGAL
    return None


def _holder_accounts(G: nx.DiGraph, holder: str) -> list[str]:
    return sorted(G._succ.get(("holder", holder), ()))


def holder_kind(ledger: Ledger, holder: str) -> tuple[str, str]:
    """(kind whose caps apply, how it was known: registry, holder_id, assumed, conflicting)."""
    said = {k for a in _holder_accounts(ledger.graph, holder)
            if (acct := ledger.accounts.get(a)) is not None and (k := acct.holder_kind) is not None}
    if len(said) == 1:
        return said.pop(), "registry"
    if said:
        return LEGAL, "conflicting"
    inferred = kind_from_id(holder)
    return (inferred, "holder_id") if inferred else (LEGAL, "assumed")


# ---- what the holder owes ----------------------------------------------------------------------------
def _flows(adj: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(n, e) for n, e in adj.items() if e.get("kind") == "flow"]


def loans_in(ledger: Ledger, account: str) -> int:
    """Principal lent into a borrower account over its life: DISBURSE or INVEST into it from custody accounts."""
    return ledger.principal(account)[0]


def outstanding(ledger: Ledger, account: str) -> int:
    """Principal still owed by a borrower account: loans in less repaid principal (REPAY less interest, REFUND)."""
    lent, back = ledger.principal(account)
    return max(0, lent - back)


@dataclass(frozen=True, slots=True)
class Borrowing:
    """One holder's outstanding borrowing on every platform the ledger knows, and the caps that apply."""

    holder: str
    kind: str
    basis: str
    by_platform: tuple[tuple[str, int], ...]  # (platform, outstanding fen), platforms where it has borrowed
    accounts: tuple[tuple[str, str, int], ...]  # (platform, borrower account, outstanding fen)

    def on(self, platform_id: str) -> int:
        return sum(x for p, x in self.by_platform if p == platform_id)

    @property
    def total(self) -> int:
        return sum(x for _, x in self.by_platform)

    @property
    def caps(self) -> tuple[int, int]:
        return CAPS[self.kind]

    def accuses(self, platform_id: str) -> bool:
        """Above the cap on this platform, or above it across platforms with this platform the largest lender."""
        one, every = self.caps
        here = self.on(platform_id)
        return here > one or (self.total > every and here > 0 and here >= max(x for _, x in self.by_platform))

    def over(self, platform_id: str) -> float:
        """The larger of outstanding/cap on this platform and across platforms (above 1: art. 17 breached)."""
        one, every = self.caps
        return max(self.on(platform_id) / one, self.total / every)


def borrowing(ledger: Ledger, holder: str) -> Borrowing:
    G = ledger.graph
    nodes = G._node  # read-only
    by_platform: dict[str, int] = {}
    accounts = []
    for a in _holder_accounts(G, holder):
        d = nodes[a]
        if d.get("role") != "BORROWER":
            continue
        owed = outstanding(ledger, a)
        by_platform[d["platform"]] = by_platform.get(d["platform"], 0) + owed
        accounts.append((d["platform"], a, owed))
    kind, basis = holder_kind(ledger, holder)
    return Borrowing(holder, kind, basis, tuple(sorted(by_platform.items())),
                     tuple(sorted(accounts, key=lambda x: (-x[2], x[1]))))


def view_borrowing(view: PlatformView, holder: str) -> Borrowing:
    """`borrowing(view.ledger, holder)`, once for the views that share (it reads no window)."""
    out: Borrowing = view.lifetime((borrowing, holder), lambda: borrowing(view.ledger, holder))
    return out


def platform_side_holders(ledger: Ledger, platform_id: str) -> frozenset[str]:
    """Who the platform is: the holders of its own, pool and reserve accounts, and its declared related parties."""
    out = set(ledger.related.get(platform_id, ()))
    for a in ledger.platform_accounts.get(platform_id, ()):
        acct = ledger.accounts[a]
        if acct.role in PLATFORM_SIDE:
            out.add(acct.holder_id)
    return frozenset(out)


def loan_evidence(G: nx.DiGraph, accounts: list[str], cap: int = MAX_TX) -> tuple[list[str], int | None]:
    """Recent loan tx ids into these borrower accounts (at most `cap`) and the first loan's time."""
    tx: list[str] = []
    since: int | None = None
    for a in accounts:
        for u, e in _flows(G.pred[a]):
            if e["by_type"][_LOAN] + e["by_type"][_INVEST] <= 0 or G.nodes[u].get("role") == "EXTERNAL":
                continue
            since = e["first_ts"] if since is None else min(since, e["first_ts"])
            tx.extend(t for t in e["recent"] if len(tx) < cap)
    return list(dict.fromkeys(tx)), since


# ---- the rule ------------------------------------------------------------------------------------------
@detector("borrowing_cap")
def borrowing_cap(view: PlatformView) -> list[Finding]:
    """Borrowers of this platform whose outstanding principal is above art. 17's caps, here or across platforms.

    A stock, not a flow: the same in every window (window_days 0), so computed once for the views that share."""
    return list(view.lifetime(borrowing_cap, lambda: _borrowing_cap(view)))


def _borrowing_cap(view: PlatformView) -> list[Finding]:
    ledger, pid = view.ledger, view.platform_id
    holders = sorted({h for b in view.accounts_by_role.get("BORROWER", ()) if (h := view.holder(b))})
    over: list[Borrowing] = []
    for h in holders:
        bw = view_borrowing(view, h)
        if bw.on(pid) > 0 and bw.over(pid) > 1.0:
            over.append(bw)
    if not over:
        return []
    over.sort(key=lambda b: (not b.accuses(pid), -b.over(pid), b.holder))
    accused = sum(1 for b in over if b.accuses(pid))
    shown = over[:MAX_HOLDERS]
    accounts = [a for b in shown for p, a, x in b.accounts if x > 0 and (p == pid or b.total > b.caps[1])]
    tx, since = loan_evidence(ledger.graph, accounts)
    top = shown[0]
    one, every = top.caps
    here = sum(b.on(pid) for b in over)
    excess = sum(max(b.on(pid) - b.caps[0], 0) for b in over)
    across = sum(1 for b in over if b.total > b.caps[1])
    guessed = sum(1 for b in over if b.basis in ("assumed", "conflicting"))
    n_acc = sum(1 for p, _, x in top.accounts if p == pid and x > 0)
    n_plat = sum(1 for _, x in top.by_platform if x > 0)
    zh_notes, en_notes = [], []
    if not accused:
        zh_notes.append("本平台对其借款未超过本平台上限，且不是其最大出借平台")
        en_notes.append("this platform lent them within its own cap and is not their largest lender")
    if guessed:
        zh_notes.append(f"其中{guessed}名借款人类型未登记或登记不一致、无法由证件号判断，按法人上限（较高者）核算")
        en_notes.append(f"{guessed} of them have no registered (or a conflicting) kind that their id settles, and "
                        f"were held to the legal-person caps, the higher ones")
    zh_extra = "".join("；" + x for x in zh_notes)
    en_extra = "".join("; " + x for x in en_notes)
    return [Finding(
        "borrowing_cap", "MEDIUM" if accused else "LOW", max(0.1, min(1.0, top.over(pid) - 1.0)),
        f"{len(over)}名借款人借款余额超过《网络借贷信息中介机构业务活动管理暂行办法》第十七条上限{zh_extra}。"
        f"如{top.holder}（{KIND_ZH[top.kind]}，{BASIS_ZH[top.basis]}）经{n_acc}个借款账户在本平台借款余额"
        f"{yuan_zh(top.on(pid))}（上限{yuan_zh(one)}），在{n_plat}个平台合计{yuan_zh(top.total)}（上限{yuan_zh(every)}）。"
        f"超限违反第十七条，但本身不证明自融。",
        f"{len(over)} borrowers owe more than art. 17 of the 2016 P2P lending measures allows{en_extra}. For example "
        f"{top.holder} ({KIND_EN[top.kind]}, {BASIS_EN[top.basis]}) owes {yuan_en(top.on(pid))} here through {n_acc} "
        f"borrower accounts (cap {yuan_en(one)}) and {yuan_en(top.total)} on {n_plat} platforms (cap {yuan_en(every)}). "
        f"A breach of art. 17, not by itself proof of self-financing.",
        tuple(tx), tuple(dict.fromkeys(accounts)), here, 0, since,
        (("holders_over_cap", float(len(over))), ("holders_accused_here", float(accused)),
         ("worst_cap_ratio", top.over(pid)), ("outstanding_fen", float(here)),
         ("excess_here_fen", float(excess)), ("over_across_platforms", float(across)),
         ("kind_assumed", float(guessed))))]
