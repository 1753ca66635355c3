"""Points at the web checkout and the member app on `tenpo.channel.Client`, and their `tenpo channel …` commands.

    with Client(broker, "web", tls=tls) as shop:
        hold = shop.points_hold("G0000042", 500, order="W-1234", key="W-1234-points")
        ...                                         # payment of the rest
        shop.points_capture(hold.hold_id, earn_on=1980, key="W-1234-capture")   # or points_release

docs/channel.md ("Points at the web checkout", "The member app") describes the operations.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable
from typing import Any

import msgspec

from tenpo.shared.channel_points import (
    DEFAULT_HOLD_S,
    DeviceAnswer,
    EarnAnswer,
    HoldAnswer,
    MemberAnswer,
    PointsBalanceAnswer,
)
from tenpo.shared.errors import UserError
from tenpo.shared.terminal import print_json, safe_text


class ExtrasMixin:
    """The later operations; ``request`` is :meth:`tenpo.channel.Client.request`."""

    request: Callable[..., dict[str, Any]]

    def points_balance(self, member: str) -> PointsBalanceAnswer:
        return msgspec.convert(self.request("points-balance", {"member": member}), PointsBalanceAnswer)

    def points_hold(self, member: str, amount: int, *, order: str, key: str | None = None,
                    hold_s: int = DEFAULT_HOLD_S) -> HoldAnswer:  # fmt: skip
        """Hold ``amount`` points for web order ``order``: stores see the balance without them at once."""
        body = {"key": key or uuid.uuid4().hex, "member": member, "amount": amount, "order": order, "hold_s": hold_s}
        return msgspec.convert(self.request("points-hold", body), HoldAnswer)

    def points_capture(self, hold_id: str, *, earn_on: int = 0, key: str | None = None) -> HoldAnswer:
        """The order is complete: the hold becomes its redemption; ``earn_on`` yen earn at the member's rank.
        ChannelError ``conflict`` if the balance no longer covers it (a store spent the points offline)."""
        body = {"key": key or f"capture-{hold_id}", "hold_id": hold_id, "earn_on": earn_on}
        return msgspec.convert(self.request("points-capture", body), HoldAnswer)

    def points_release(self, hold_id: str, *, key: str | None = None) -> HoldAnswer:
        body = {"key": key or f"release-{hold_id}", "hold_id": hold_id}
        return msgspec.convert(self.request("points-release", body), HoldAnswer)

    def points_earn(self, member: str, *, order: str, earn_on: int, key: str | None = None) -> EarnAnswer:
        body = {"key": key or f"earn-{order}", "member": member, "order": order, "earn_on": earn_on}
        return msgspec.convert(self.request("points-earn", body), EarnAnswer)

    def device_register(self, member: str, device: str, *, key: str | None = None) -> DeviceAnswer:
        body = {"key": key or f"register-{device}", "member": member, "device": device}
        return msgspec.convert(self.request("device-register", body), DeviceAnswer)

    def device_rotate(self, member: str, device: str, *, key: str | None = None) -> DeviceAnswer:
        body = {"key": key or uuid.uuid4().hex, "member": member, "device": device}
        return msgspec.convert(self.request("device-rotate", body), DeviceAnswer)

    def member_update(self, member: str, *, key: str | None = None, consent: dict[str, bool] | None = None,
                      **fields: str) -> MemberAnswer:  # fmt: skip
        body: dict[str, Any] = {"key": key or uuid.uuid4().hex, "member": member, **fields}
        if consent:
            body["consent"] = consent
        return msgspec.convert(self.request("member-update", body), MemberAnswer)


# ---------------------------------------------------------------------------- `tenpo channel …`

Common = Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
Run = Callable[[argparse.Namespace, Any], Any]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], common: Common, run: Run) -> None:
    """`tenpo channel points …`, `tenpo channel device …`, `tenpo channel member update`."""
    points = commands.add_parser("points", help="points at the web checkout: balance, hold, capture, release, earn")
    ops = points.add_subparsers(dest="points_command", metavar="COMMAND")
    ops.required = True
    p = common(ops.add_parser("balance", help="what a member may spend now (active holds taken off)"))
    p.add_argument("--member", required=True, metavar="M")
    p.set_defaults(func=lambda a: _show(a, run(a, lambda c: c.points_balance(a.member))))
    p = common(ops.add_parser("hold", help="hold points for a web order (released unless captured)"))
    p.add_argument("--member", required=True, metavar="M")
    p.add_argument("--amount", required=True, type=int)
    p.add_argument("--order", required=True, metavar="ORDER")
    p.add_argument("--minutes", type=int, default=DEFAULT_HOLD_S // 60, help="until the hold expires (default 15)")
    p.add_argument("--key", metavar="K", help="idempotency key (default: a new one)")
    p.set_defaults(func=lambda a: _show(a, run(a, lambda c: c.points_hold(
        a.member, a.amount, order=a.order, key=a.key, hold_s=a.minutes * 60))))
    p = common(ops.add_parser("capture", help="the order is complete: the hold becomes its redemption"))
    p.add_argument("hold_id", metavar="HOLD")
    p.add_argument("--earn-on", type=int, default=0, metavar="YEN", help="yen paid otherwise: earns at the rank")
    p.add_argument("--key", metavar="K", help="idempotency key (default: capture-HOLD)")
    p.set_defaults(func=lambda a: _show(a, run(a, lambda c: c.points_capture(a.hold_id, earn_on=a.earn_on, key=a.key))))
    p = common(ops.add_parser("release", help="give the held points back"))
    p.add_argument("hold_id", metavar="HOLD")
    p.add_argument("--key", metavar="K", help="idempotency key (default: release-HOLD)")
    p.set_defaults(func=lambda a: _show(a, run(a, lambda c: c.points_release(a.hold_id, key=a.key))))
    p = common(ops.add_parser("earn", help="a web order paid without points earns at the member's rank"))
    p.add_argument("--member", required=True, metavar="M")
    p.add_argument("--order", required=True, metavar="ORDER")
    p.add_argument("--earn-on", required=True, type=int, metavar="YEN")
    p.add_argument("--key", metavar="K", help="idempotency key (default: earn-ORDER)")
    p.set_defaults(func=lambda a: _show(a, run(a, lambda c: c.points_earn(a.member, order=a.order, earn_on=a.earn_on,
                                                                         key=a.key))))  # fmt: skip
    device = commands.add_parser("device", help="the member app: register a device, rotate the beacon secret")
    ops = device.add_subparsers(dest="device_command", metavar="COMMAND")
    ops.required = True
    for name, help_text in (("register", "register a device for a member; prints the member's beacon secret"),
                            ("rotate", "a new beacon secret; the old one stops at stores after their id refresh")):
        p = common(ops.add_parser(name, help=help_text))
        p.add_argument("--member", required=True, metavar="M")
        p.add_argument("--device", required=True, metavar="D")
        p.add_argument("--key", metavar="K", help="idempotency key")
        method = "device_register" if name == "register" else "device_rotate"
        p.set_defaults(func=lambda a, m=method: _show(a, run(a, lambda c: getattr(c, m)(a.member, a.device, key=a.key))))
    member = commands.add_parser("member", help="the member app: profile and consent edits")
    ops = member.add_subparsers(dest="member_command", metavar="COMMAND")
    ops.required = True
    p = common(ops.add_parser("update", help="change profile fields or consent; the newest edit of a field wins"))
    p.add_argument("--member", required=True, metavar="M")
    p.add_argument("--member-name", dest="member_name", metavar="NAME", help="the member's name (--name is the channel)")
    for field in ("kana", "phone", "email"):
        p.add_argument(f"--{field}")
    p.add_argument("--consent", action="append", default=[], metavar="PURPOSE=yes|no",
                   help="grant or withdraw one purpose (repeatable)")  # fmt: skip
    p.add_argument("--key", metavar="K", help="idempotency key (default: a new one)")
    p.set_defaults(func=cmd_member_update, run=run)


def _consent(items: list[str]) -> dict[str, bool]:
    consent: dict[str, bool] = {}
    for item in items:
        purpose, _, said = item.partition("=")
        if not purpose or said.lower() not in ("yes", "no", "true", "false", "1", "0"):
            raise UserError(f"--consent {safe_text(item)!r}: PURPOSE=yes or PURPOSE=no")
        consent[purpose] = said.lower() in ("yes", "true", "1")
    return consent


def cmd_member_update(args: argparse.Namespace) -> int:
    given = {"name": args.member_name, "kana": args.kana, "phone": args.phone, "email": args.email}
    fields = {f: value for f, value in given.items() if value is not None}
    consent = _consent(args.consent)
    answer = args.run(args, lambda c: c.member_update(args.member, key=args.key, consent=consent or None, **fields))
    return _show(args, answer)


def _show(args: argparse.Namespace, answer: msgspec.Struct) -> int:
    data = msgspec.to_builtins(answer)
    if args.json:
        print_json(data)
    else:
        print("  ".join(f"{k} {safe_text(str(v))}" for k, v in data.items()))
    return 0
