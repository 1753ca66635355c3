"""`tenpo cloud loyalty ranks|expire|lots|grant|config`: member ranks and points expiry at HQ (docs/loyalty.md)."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from tenpo.cloud.cli_support import db_flag, print_json
from tenpo.cloud.db import Central
from tenpo.cloud.loyalty import store
from tenpo.shared.errors import UserError
from tenpo.shared.ids import is_id
from tenpo.shared.terminal import safe_text


def _as_of(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--as-of", metavar="YYYY-MM-DD", help="the JST day to compute for (default: today in JST)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def register_cloud(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    loyalty = commands.add_parser("loyalty", help="points expiry (lots, first in first out) and member ranks")
    sub = loyalty.add_subparsers(dest="loyalty_command", metavar="COMMAND")
    sub.required = True
    ranks = _as_of(db_flag(sub.add_parser("ranks", help="every member's rank from rolling spend; changes go to the stores")))
    ranks.add_argument("--dry-run", action="store_true", help="compute and print, send nothing")
    ranks.set_defaults(func=cmd_ranks)
    expire = _as_of(db_flag(sub.add_parser("expire", help="write the expiry entries due on the day (idempotent)")))
    expire.set_defaults(func=cmd_expire)
    lots = _as_of(db_flag(sub.add_parser("lots", help="a member's points lots: what is left and when it ends")))
    lots.add_argument("member_id")
    lots.set_defaults(func=cmd_lots)
    grant = db_flag(sub.add_parser("grant", help="campaign points with their own last good day"))
    grant.add_argument("member_id")
    grant.add_argument("points", type=int)
    grant.add_argument("--expires", required=True, metavar="YYYY-MM-DD", help="the last JST day they are good")
    grant.add_argument("--campaign", required=True, help="the campaign's name (the ledger entry's ref)")
    grant.set_defaults(func=cmd_grant)
    config = db_flag(sub.add_parser("config", help="set the [loyalty] rules from a TOML file, or show them"))
    config.add_argument("file", type=Path, nargs="?", help="TOML with a [loyalty] table (none: show the rules)")
    config.add_argument("--json", action="store_true")
    config.set_defaults(func=cmd_config)


def _day(text: str | None, flag: str) -> date:
    if text is None:
        return store.today_jst()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UserError(f"{flag} {safe_text(text)!s}: expected a date YYYY-MM-DD") from None


def _member(text: str) -> str:
    if not is_id(text):
        raise UserError(f"member {safe_text(text)}: not a valid member id")
    return text


def cmd_ranks(args: argparse.Namespace) -> int:
    rows = store.run_ranks(Central(args.db, create=False), _day(args.as_of, "--as-of"), dry_run=args.dry_run)
    if args.json:
        print_json([r.as_json() for r in rows])
        return 0
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.rank] = counts.get(r.rank, 0) + 1
        moved = f"  (was {safe_text(r.previous)})" if r.previous not in (None, r.rank) else ""
        print(f"{r.member_id:<24} {safe_text(r.rank):<8} x{r.multiplier_pct / 100:.2f}  ¥{r.spend:,}{moved}")
    print("  ".join(f"{safe_text(name)}: {n}" for name, n in counts.items()) or "no members")
    return 0


def cmd_expire(args: argparse.Namespace) -> int:
    report = store.run_expiry(Central(args.db, create=False), _day(args.as_of, "--as-of"))
    if args.json:
        print_json(report.as_json())
    else:
        print(f"expiry as of {report.as_of}: {report.expired:,} points from {report.members} member(s)"
              f" ({report.members_seen} with points looked at)")  # fmt: skip
    return 0


def cmd_lots(args: argparse.Namespace) -> int:
    db = Central(args.db, create=False)
    member_id = _member(args.member_id)
    if db.one("SELECT 1 FROM members WHERE member_id = ?", (member_id,)) is None:
        raise UserError(f"member {member_id}: not found at HQ")
    lots = store.member_lots(db, member_id, _day(args.as_of, "--as-of"))
    if args.json:
        print_json(lots.as_json())
        return 0
    rank = f"{safe_text(lots.rank)} (x{(lots.multiplier_pct or 100) / 100:.2f})" if lots.rank else "not ranked yet"
    print(f"member {member_id}: {lots.balance:,} pt, rank {rank}")
    for until, points in lots.lots:
        print(f"  {points:>8,} pt good through {until}")
    if lots.expired_due:
        print(f"  {lots.expired_due:+,} pt due at the next expiry run")
    return 0


def cmd_grant(args: argparse.Namespace) -> int:
    if not is_id(args.campaign):
        raise UserError(f"--campaign {safe_text(args.campaign)}: use letters, digits, '-', '_' and '.'")
    seq = store.grant(Central(args.db, create=False), _member(args.member_id), args.points,
                      _day(args.expires, "--expires"), f"campaign:{args.campaign}")  # fmt: skip
    print(f"granted {args.points:,} pt to {args.member_id}, good through {args.expires} (campaign entry {seq})")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    db = Central(args.db, create=False)
    config = store.set_config(db, args.file) if args.file else store.load_config(db)
    if args.json:
        print_json(config.as_json())
        return 0
    print(f"points good through the end of the JST month {config.expiry_months} months after they are earned;"
          f" ranks on {config.window_months} months of spend")  # fmt: skip
    for rank in config.ranks:
        print(f"  {safe_text(rank.name):<10} from ¥{rank.threshold:,}  x{rank.multiplier_pct / 100:.2f}")
    return 0
