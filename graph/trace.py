"""Fund tracing: where did the money that leaves an account come from?

Rule (documented, deterministic): **pro-rata through balances**. Every custody account carries
the composition of its balance by *origin*; money leaving takes each origin in proportion
to the balance it leaves from, and adds that composition to the receiving account.
Origins are assigned where money changes its owner by contract:

- money entering custody from an EXTERNAL card is labelled by the receiving role
  (investor deposit -> INVESTOR_FUNDS, borrower's own -> BORROWER_FUNDS, payment client ->
  RESERVE_FUNDS, platform capital -> OWN_FUNDS; escrow and risk-reserve top-ups -> INVESTOR_FUNDS);
- a FEE into PLATFORM_OWN becomes OWN_FUNDS (disclosed revenue is the platform's money);
- a DISBURSE, or an INVEST naming a listing, into a BORROWER becomes LOAN_PROCEEDS;
- everything else keeps its composition. Money leaving more than the traced balance
  (opening balances before the stream began) is UNKNOWN.

So a detector can say what share of an investor payout was other investors' money
(INVESTOR_FUNDS) rather than repayments (BORROWER_FUNDS, LOAN_PROCEEDS), or what share of
what reached a controller's card was a borrower's loan.
"""
from __future__ import annotations

__all__ = ["ORIGINS", "N_ORIGINS", "INVESTOR_FUNDS", "LOAN_PROCEEDS", "BORROWER_FUNDS", "RESERVE_FUNDS",
           "OWN_FUNDS", "UNKNOWN", "entry_origin", "take", "add"]

ORIGINS = ("INVESTOR_FUNDS", "LOAN_PROCEEDS", "BORROWER_FUNDS", "RESERVE_FUNDS", "OWN_FUNDS", "UNKNOWN")
N_ORIGINS = len(ORIGINS)
INVESTOR_FUNDS, LOAN_PROCEEDS, BORROWER_FUNDS, RESERVE_FUNDS, OWN_FUNDS, UNKNOWN = range(N_ORIGINS)
_ORIGIN_RANGE = range(N_ORIGINS)

_EXTERNAL_ENTRY = {
    "INVESTOR": INVESTOR_FUNDS, "BORROWER": BORROWER_FUNDS, "CLIENT_RESERVE": RESERVE_FUNDS,
    "PLATFORM_OWN": OWN_FUNDS, "CUSTODY_POOL": INVESTOR_FUNDS, "RISK_RESERVE": INVESTOR_FUNDS,
}


def entry_origin(tx_type: str, src_role: str, dst_role: str, has_listing: bool) -> int | None:
    """The origin money takes on arrival, or None when it keeps the composition it left with."""
    if src_role == "EXTERNAL":
        return _EXTERNAL_ENTRY.get(dst_role, UNKNOWN)
    if dst_role == "PLATFORM_OWN" and tx_type == "FEE":
        return OWN_FUNDS
    if dst_role == "BORROWER" and (tx_type == "DISBURSE" or (tx_type == "INVEST" and has_listing)):
        return LOAN_PROCEEDS
    return None


def take(comp: list[int], balance: int, amount: int) -> list[int]:
    """Remove `amount` pro rata from a composition summing to `balance`; returns what left (sums to amount).

    Once per transaction: money from outside custody (no traced balance) returns at once, and only the
    origins the balance holds are visited."""
    traced = min(balance, amount) if balance > 0 else min(0, amount)
    if traced <= 0:
        out = [0] * N_ORIGINS
        out[UNKNOWN] = amount - traced
        return out
    out = [0] * N_ORIGINS
    held = [i for i in _ORIGIN_RANGE if comp[i] > 0]
    left = traced
    if held:
        last = held[-1]
        for i in held:
            c = comp[i]
            part = min(left, c) if i == last else min(c * traced // balance, c, left)
            out[i] = part
            comp[i] = c - part
            left -= part
    if left > 0:  # rounding: take what is left from the largest holdings
        for i in sorted(_ORIGIN_RANGE, key=lambda j: -comp[j]):
            part = min(comp[i], left)
            out[i] += part
            comp[i] -= part
            left -= part
            if left == 0:
                break
    out[UNKNOWN] += left + amount - traced
    return out


def add(comp: list[int], parts: list[int]) -> None:
    for i in range(N_ORIGINS):
        comp[i] += parts[i]
