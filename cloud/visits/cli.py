"""`tenpo cloud visits MEMBER_ID`: a member's visits to the stores, as HQ has them."""

from __future__ import annotations

import argparse
import datetime as dt
import json

from tenpo.cloud.cli_support import db_flag
from tenpo.cloud.db import Central
from tenpo.cloud.visits.history import member_visits


def register_cloud(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    visits = db_flag(commands.add_parser("visits", help="a member's store visits (from the beacons)"))
    visits.add_argument("member_id")
    visits.add_argument("--limit", type=int, default=50)
    visits.add_argument("--json", action="store_true", help="print JSON instead of text")
    visits.set_defaults(func=cmd_visits)


def _clock(t: float | None) -> str:
    return "-" if t is None else dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def cmd_visits(args: argparse.Namespace) -> int:
    visits = member_visits(Central(args.db, create=False), args.member_id, limit=args.limit)
    if args.json:
        print(json.dumps([v.as_json() for v in visits], ensure_ascii=False, indent=2))
        return 0
    if not visits:
        print(f"no visits recorded for {args.member_id}")
        return 0
    for v in visits:
        dwell = "still in the store" if v.left_at is None else f"{v.dwell_s:.0f} s"
        coupons = f"  coupons: {', '.join(v.coupons)}" if v.coupons else ""
        print(f"{_clock(v.arrived_at)}  {v.store_id} {v.store_name or ''}  {dwell}{coupons}")
    return 0
