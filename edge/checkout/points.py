"""Points: accrual on what the customer paid, and redemption limits while offline.

1 point = 1 yen when redeemed; points are a tender, so they do not change the tax.
Points are earned on the total paid excluding the points redeemed (paying with points earns
nothing), at `points_per_unit` per `points_unit_yen`, rounded by `points_rounding`.
"""

from __future__ import annotations

from tenpo.edge.checkout.config import CheckoutConfig
from tenpo.edge.checkout.errors import InsufficientPoints, RedemptionOverCap, RedemptionRefused
from tenpo.edge.checkout.model import MemberInfo


def points_earned(total: int, redeemed: int, config: CheckoutConfig, multiplier_pct: int = 100) -> int:
    """Points for a sale of `total` yen (tax included) of which `redeemed` were paid in points, at the
    member's rank multiplier (percent of the base rate, docs/loyalty.md), rounded once."""
    basis = max(total - redeemed, 0)
    return config.points_rounding.divide(basis * config.points_per_unit * multiplier_pct, config.points_unit_yen * 100)


def check_redemption(
    wanted: int,
    *,
    total: int,
    member: MemberInfo | None,
    offline: bool,
    config: CheckoutConfig,
) -> None:
    """Refuse a redemption the member cannot make; silent when it is allowed.

    Offline, a store cannot see what other stores redeemed, so each sale and each member's whole
    offline period are capped: two stores offline at once overspend a balance by at most the cap,
    and HQ records whatever does overspend as a conflict.
    """
    if wanted == 0:
        return
    if wanted < 0:
        raise RedemptionRefused(f"redeem {wanted:,} points: must be a positive number")
    if member is None:
        raise RedemptionRefused(f"redeem {wanted:,} points: no member on this sale")
    usable = member.points_balance - member.expired_points  # lots past their last day cannot be spent
    if wanted > usable:
        raise InsufficientPoints(member.member_id, usable, wanted)
    if wanted > total:
        raise RedemptionRefused(f"redeem {wanted:,} points: more than the ¥{total:,} to pay")
    if not offline:
        return
    if wanted > config.max_redeem_per_sale:
        raise RedemptionOverCap(
            f"redeem {wanted:,} points: over the offline limit of {config.max_redeem_per_sale:,} per sale"
        )
    already = member.redeemed_this_offline_period
    cap = config.max_redeem_per_member_offline
    if already + wanted > cap:
        raise RedemptionOverCap(
            f"redeem {wanted:,} points: member {member.member_id} already redeemed {already:,} "
            f"of the {cap:,} allowed per offline period ({max(cap - already, 0):,} left)"
        )
