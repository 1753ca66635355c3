"""Why a sale or refund is refused: each reason is a UserError whose message is one line."""

from __future__ import annotations

from tenpo.shared.errors import UserError


def yen(amount: int) -> str:
    """¥1,234 / -¥30: how amounts appear in messages and on receipts."""
    return f"-¥{-amount:,}" if amount < 0 else f"¥{amount:,}"


class CheckoutRefused(UserError):
    """Base for every refused sale or refund; nothing may be written when it is raised."""


class UnreadableCode(CheckoutRefused):
    def __init__(self, code: str, why: str = "not a JAN/EAN code, an RFID EPC or sku:SKU") -> None:
        self.code = code
        super().__init__(f"{code}: {why}")


class BadCheckDigit(CheckoutRefused):
    def __init__(self, code: str, expected: int) -> None:
        self.code, self.expected = code, expected
        super().__init__(f"{code}: bad check digit (expected {expected})")


class UnknownCode(CheckoutRefused):
    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(f"{code}: not in the product list")


class SerialAlreadySold(CheckoutRefused):
    def __init__(self, gtin: str, serial: str) -> None:
        self.gtin, self.serial = gtin, serial
        super().__init__(f"RFID {gtin} serial {serial}: already sold")


class BadDiscount(CheckoutRefused):
    """A discount larger than what it applies to, or a percent outside 1..100."""


class PaymentShort(CheckoutRefused):
    def __init__(self, total: int, paid: int) -> None:
        self.total, self.paid = total, paid
        more = yen(total - paid)
        super().__init__(f"payment short: total {yen(total)}, paid {yen(paid)} ({more} more needed)")


class Overpaid(CheckoutRefused):
    """A non-cash tender larger than what is left to pay (only cash gives change)."""


class RedemptionRefused(CheckoutRefused):
    """Base for refused point redemptions."""


class RedemptionOverCap(RedemptionRefused):
    pass


class InsufficientPoints(RedemptionRefused):
    def __init__(self, member_id: str, balance: int, wanted: int) -> None:
        self.member_id, self.balance, self.wanted = member_id, balance, wanted
        super().__init__(f"member {member_id} has {balance:,} points, cannot redeem {wanted:,}")


class NotRefundable(CheckoutRefused):
    """The earlier receipt cannot be refunded (it is itself a refund, or nothing of it is left)."""
