"""The deal grammar, and reading the formula a deal's comment describes.

A deal is one of (keywords in any case, N a non-negative amount with at most 4 decimals):

    PPC        commission = raw earnings + rate x clicks
    FIXED N    commission = raw earnings + N
    Hybrid N   commission = raw earnings + N + rate x clicks

applied once per (day, marketing source). Comments such as
``total commision= raw_earnings + 100 + clicks*10`` are read only to warn when they describe
another formula than the deal; the deal column always decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

import pyarrow as pa

from growthflow.commissions.config import MONEY_SCALE

_DEAL = re.compile(r"^\s*(ppc|fixed|hybrid)(?:\s+([0-9]+(?:\.[0-9]{1,4})?))?\s*$", re.IGNORECASE)
_KINDS = {"ppc": "PPC", "fixed": "FIXED", "hybrid": "Hybrid"}
DEAL_TYPE = pa.struct(
    [
        ("kind", pa.string()),
        ("label", pa.string()),
        ("fee_e4", pa.int64()),
        ("per_click", pa.int8()),
    ]
)


@dataclass(frozen=True)
class Terms:
    fee_e4: int
    per_click: bool
    rate_e4: int | None = None  # comments only: the rate they name

    def describe(self) -> str:
        parts = ["raw"]
        if self.fee_e4:
            parts.append(_amount(self.fee_e4))
        if self.per_click:
            rate = f"{_amount(self.rate_e4)}" if self.rate_e4 is not None else "rate"
            parts.append(f"clicks x {rate}")
        return " + ".join(parts)


def _amount(e4: int) -> str:
    return f"{(Decimal(e4) / MONEY_SCALE).normalize():f}"


def parse_deal(text: str | None) -> tuple[str, str, Terms] | None:
    """(kind, label, terms) of a deal string, or None when it is not one."""
    m = _DEAL.match(text or "")
    if not m:
        return None
    kind = _KINDS[m[1].lower()]
    if (kind == "PPC") != (m[2] is None):  # PPC takes no amount; FIXED and Hybrid need one
        return None
    fee = int(Decimal(m[2]) * MONEY_SCALE) if m[2] else 0
    label = kind if kind == "PPC" else f"{kind} {_amount(fee)}"
    return kind, label, Terms(fee_e4=fee, per_click=kind != "FIXED")


def parse_deals(values: pa.Array) -> pa.StructArray:
    """``parse_deal`` over an array (deal files are small: one row per marketing source)."""
    rows = []
    for text in values.to_pylist():
        parsed = parse_deal(text)
        if parsed is None:
            rows.append({"kind": None, "label": None, "fee_e4": None, "per_click": None})
        else:
            kind, label, terms = parsed
            rows.append(
                {
                    "kind": kind,
                    "label": label,
                    "fee_e4": terms.fee_e4,
                    "per_click": int(terms.per_click),
                }
            )
    return pa.array(rows, DEAL_TYPE)


_NUMBER = re.compile(r"^[0-9]+(?:\.[0-9]+)?$")
_CLICKS = re.compile(
    r"^(?:clicks?\s*\*\s*([0-9]+(?:\.[0-9]+)?)|([0-9]+(?:\.[0-9]+)?)\s*\*\s*clicks?|clicks?)$"
)


def comment_terms(comment: str | None) -> Terms | None:
    """The formula a comment describes (``... = raw_earnings + 100 + clicks*10``), or None
    when the comment is not such a formula."""
    if not comment or "raw" not in comment.lower():
        return None
    formula = comment.split("=", 1)[-1].lower()
    fee, per_click, rate = Decimal(0), False, None
    for term in (t.strip() for t in formula.split("+")):
        if term.startswith("raw"):
            continue
        if _NUMBER.match(term):
            fee += Decimal(term)
            continue
        m = _CLICKS.match(term)
        if not m:
            return None
        per_click = True
        if m[1] or m[2]:
            rate = int(Decimal(m[1] or m[2]) * MONEY_SCALE)
    return Terms(fee_e4=int(fee * MONEY_SCALE), per_click=per_click, rate_e4=rate)


def contradiction(deal: str, comment: str | None, rate_e4: int) -> str | None:
    """Why a deal's comment disagrees with it, or None."""
    parsed = parse_deal(deal)
    said = comment_terms(comment)
    if parsed is None or said is None:
        return None
    terms = parsed[2]
    rate_differs = said.per_click and said.rate_e4 is not None and said.rate_e4 != rate_e4
    if said.fee_e4 != terms.fee_e4 or said.per_click != terms.per_click or rate_differs:
        deal_terms = Terms(terms.fee_e4, terms.per_click, rate_e4)
        return f"deal {parsed[1]} means {deal_terms.describe()}, the comment says {said.describe()}"
    return None
