"""Registration keywords (seed 000 §三(一)): unlicensed finance businesses become key supervision targets."""
from __future__ import annotations

from detectors.base import Finding, PlatformView, detector

KEYWORDS = ("交易所", "交易中心", "金融", "资产管理", "理财", "基金", "基金管理", "投资管理", "财富管理",
            "股权投资基金", "网贷", "网络借贷", "P2P", "股权众筹", "互联网保险", "支付")


def keywords_in(text: str) -> list[str]:
    low = text.lower()  # once, not once per keyword
    return [k for k in KEYWORDS if k.lower() in low]


@detector("unlicensed_finance")
def unlicensed_finance(view: PlatformView) -> list[Finding]:
    p = view.platform
    if p is None or p.licence == "LICENSED":
        return []
    hits = sorted(set(keywords_in(p.name) + keywords_in(p.business_scope)))
    if not hits:
        return []
    sev = "LOW"  # a registry fact, not money evidence: it raises attention, never a tier on its own
    status_zh = "无牌照" if p.licence == "UNLICENSED" else "经营范围与牌照不符"
    status_en = "unlicensed" if p.licence == "UNLICENSED" else "operating outside its licence"
    return [Finding(
        "unlicensed_finance", sev, min(1.0, 0.5 + 0.1 * len(hits)),
        f"{status_zh}，企业名称或经营范围含金融关键词（{'、'.join(hits)}），列为重点监管对象。",
        f"{status_en.capitalize()} while its name or business scope carries finance keywords ({', '.join(hits)}): "
        f"a key supervision target.",
        (), (), 0, 0, p.updated_at, (("keywords", float(len(hits))),))]


@detector("no_custody")
def no_custody(view: PlatformView) -> list[Finding]:
    """No custodian bank in the registry: the rectification requires every internet finance business to keep client
    money in third-party custody (seed 000 §二 for P2P and equity crowdfunding, §四(二) for all), so nobody
    independent sees this platform's money and only its own disclosures speak for it. A registry fact, LOW.

    Full strength (15 points of the rules' part, below ELEVATED on its own): a platform whose money nobody sees
    cannot be shown clean, so it must not rank below one whose ledger was seen and found clean. At the least
    weight (9 points) a disclosure-only scheme nothing revealed ranked under the clean lawful platforms in custody
    (10 points by median on tuning seeds 3-5): the score read "no evidence" as "evidence of none"."""
    p = view.platform
    if p is None or p.custodian_id is not None:
        return []
    return [Finding(
        "no_custody", "LOW", 1.0,
        "未落实客户资金第三方存管（登记无存管银行）：平台资金无独立机构监督，仅有其自行披露的数据。",
        "No third-party custody of client money (no custodian bank in the registry): nobody independent sees the "
        "platform's money; only its own disclosures speak for it.",
        (), (), 0, 0, p.updated_at, (("custodian_banks", 0.0),))]
