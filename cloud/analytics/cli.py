"""`tenpo cloud analytics rfm|basket|cohorts|ltv|recommend|segments|export|refresh` (docs/analytics.md).

Every report first folds in what is new (the incremental refresh, without sending recommendations),
so the figures are current even between two runs of the scheduled job.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

from tenpo.cloud.cli_support import db_flag, print_json
from tenpo.cloud.db import Central
from tenpo.shared.ids import is_store_id
from tenpo.shared.terminal import safe_text

from . import charts, recs, reports
from .config import CHANNELS, AnalyticsConfig, load_config
from .export import export
from .job import refresh
from .model import today_jst
from .refresh import incremental_refresh
from .retention import CohortRow
from .rfm import segment_counts


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _store(text: str) -> str:
    if not is_store_id(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a store id")
    return text


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a fraction from 0 to 1 (0.01 = 1 % of purchases)")
    return value


def register_cloud(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("analytics", help="RFM, segments, retention, LTV, basket rules, recommendations")
    sub = group.add_subparsers(dest="analytics_command", metavar="COMMAND")
    sub.required = True

    def command(name: str, help_text: str, chart: str | None = None) -> argparse.ArgumentParser:
        parser = db_flag(sub.add_parser(name, help=help_text))
        parser.add_argument("--config", type=Path, help="analytics TOML (default: $TENPO_ANALYTICS_CONFIG)")
        parser.add_argument("--json", action="store_true")
        if chart:
            parser.add_argument("--chart", type=Path, metavar="FILE.png", help=chart)
        return parser

    rfm = command("rfm", "recency, frequency, monetary, scores 1-5 and segment per member", "the R x F grid heatmap")
    rfm.add_argument("--as-of", type=_date, metavar="DATE", help="JST date (default: today)")
    rfm.add_argument("--store", type=_store, help="only purchases at this store")
    rfm.add_argument("--limit", type=int, default=30, help="rows shown without --json (default 30, best first)")
    rfm.set_defaults(func=cmd_rfm)
    basket = command("basket", "rules between SKUs bought together (support, confidence, lift)", "top rules by lift")
    basket.add_argument("--min-support", type=_fraction, metavar="X", help="default: the config's (0.01)")
    basket.add_argument("--store", type=_store, help="purchases at this store only")
    basket.add_argument("--limit", type=int, default=30, help="rules shown without --json (default 30)")
    basket.set_defaults(func=cmd_basket)
    cohorts = command("cohorts", "F2 conversion, repeat rate, retention by first-purchase month", "the retention triangle")
    cohorts.add_argument("--as-of", type=_date, metavar="DATE")
    cohorts.set_defaults(func=cmd_cohorts)
    ltv = command("ltv", "lifetime value per member and mean per cohort", "mean LTV per cohort")
    ltv.add_argument("--as-of", type=_date, metavar="DATE")
    ltv.set_defaults(func=cmd_ltv)
    rec = command("recommend", "next-best items for one member")
    rec.add_argument("member_id", metavar="MEMBER_ID")
    rec.set_defaults(func=cmd_recommend)
    seg = command("segments", "members per segment")
    seg.add_argument("--as-of", type=_date, metavar="DATE")
    seg.set_defaults(func=cmd_segments)
    exp = db_flag(sub.add_parser("export", help="a campaign list: consented members of a segment, one row per contact"))
    exp.add_argument("--config", type=Path)
    exp.add_argument("--segment", required=True, metavar="NAME")
    exp.add_argument("--channel", required=True, choices=CHANNELS)
    exp.add_argument("-o", "--output", type=Path, metavar="FILE", help="CSV file (0600); default: standard output")
    exp.add_argument("--by", default="operator", help="who exports (audited)")
    exp.set_defaults(func=cmd_export)
    ref = command("refresh", "fold new sales and orders into the analytics tables; send changed recommendations")
    ref.add_argument("--full", action="store_true", help="recompute every table from the sales and orders")
    ref.add_argument("--no-send", action="store_true", help="do not compute or send recommendations")
    ref.set_defaults(func=cmd_refresh)


def _open(args: argparse.Namespace) -> tuple[Central, AnalyticsConfig]:
    config = load_config(args.config)
    db = Central(args.db, create=False)
    incremental_refresh(db, config)
    return db, config


def cmd_rfm(args: argparse.Namespace) -> int:
    db, config = _open(args)
    as_of = args.as_of or today_jst()
    rows = reports.rfm(db, config, as_of, args.store)
    if args.chart:
        where = f" · {args.store}" if args.store else ""
        charts.rfm_heatmap(rows, args.chart, f"RFM · {len(rows)} members · as of {as_of}{where}")
    if args.json:
        print_json([r.as_json() for r in rows])
        return 0
    print(f"RFM as of {as_of}{' at ' + args.store if args.store else ''}: {len(rows)} members")
    for name, n in segment_counts(rows, config.segments):
        print(f"  {safe_text(name)}  {n}")
    print(f"{'member':<24} {'days':>5} {'freq':>5} {'monetary':>12}  R F M  segment")
    for r in sorted(rows, key=lambda r: (-r.monetary, r.member_id))[: max(0, args.limit)]:
        scores = f"{r.r} {r.f} {r.m}"
        print(f"{r.member_id:<24} {r.recency_days:>5} {r.frequency:>5} {r.monetary:>12,}  {scores}  {safe_text(r.segment)}")
    return 0


def cmd_basket(args: argparse.Namespace) -> int:
    db, config = _open(args)
    total, rules = reports.basket(db, config, args.min_support, args.store)
    if args.chart:
        charts.top_rules(rules, args.chart)
    if args.json:
        print_json([r.as_json() for r in rules])
        return 0
    support = config.min_support if args.min_support is None else args.min_support
    print(f"{len(rules)} rules over {total} purchases{' at ' + args.store if args.store else ''} (min support {support})")
    for r in rules[: max(0, args.limit)]:
        print(f"  {', '.join(r.antecedent)} → {r.consequent}   support {r.support:.4f}  confidence {r.confidence:.3f}"
              f"  lift {r.lift:.2f}  ({r.count} purchases)")  # fmt: skip
    return 0


def cmd_cohorts(args: argparse.Namespace) -> int:
    db, config = _open(args)
    data = reports.retention(db, config, args.as_of)
    if args.chart:
        charts.cohort_triangle([_cohort(c) for c in data["cohorts"]], args.chart)
    if args.json:
        print_json(data)
        return 0
    rep = data["repeat"]
    print(f"as of {data['as_of']}: repeat rate {rep['rate']:.1%} ({rep['repeaters']}/{rep['members']} members)")
    print(f"F2 conversion within {data['f2_days']} days, by first month and channel:")
    for f in data["f2"]:
        print(f"  {f['month']}  {safe_text(f['channel']):<12} {f['converted']:>6}/{f['members']:<6} {f['rate']:.1%}")
    print("retention by cohort (month 0, 1, 2, …):")
    for c in data["cohorts"]:
        print(f"  {c['cohort']} ({c['size']:>5})  " + " ".join(f"{v:>4.0%}" for v in c["retention"]))
    return 0


def _cohort(data: dict[str, Any]) -> CohortRow:
    return CohortRow(**data)


def cmd_ltv(args: argparse.Namespace) -> int:
    db, _config = _open(args)
    data = reports.ltv(db, args.as_of)
    if args.chart:
        charts.ltv_bars(data["cohorts"], args.chart)
    if args.json:
        print_json(data)
        return 0
    print(f"LTV as of {data['as_of']}: {len(data['members'])} members")
    for c in data["cohorts"]:
        print(f"  {c['cohort']}  {c['members']:>6} members  mean ¥{c['ltv_mean']:,.0f}")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    db, config = _open(args)
    data = recs.member_recommendations(db, config, args.member_id)
    if args.json:
        print_json(data)
        return 0
    print(f"recommendations for {data['member_id']} (as of {data['as_of']}):")
    for item in data["items"]:
        print(f"  {item['sku']:<20} {safe_text(item['name'] or ''):<30} {item['reason']}")
    if not data["items"]:
        print("  (nothing to recommend: no sales yet)")
    return 0


def cmd_segments(args: argparse.Namespace) -> int:
    db, config = _open(args)
    counts = segment_counts(reports.rfm(db, config, args.as_of), config.segments)
    if args.json:
        print_json([{"segment": name, "members": n} for name, n in counts])
        return 0
    for name, n in counts:
        print(f"{safe_text(name)}  {n}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    db, config = _open(args)
    rows = export(db, config, args.segment, args.channel, args.output, sys.stdout, args.by)
    if args.output:
        print(f"{rows} members exported to {args.output} (0600, audited)", file=sys.stderr)
    return 0


def cmd_refresh(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    db = Central(args.db, create=False)
    result = refresh(db, config, full=args.full, send=not args.no_send)
    if args.json:
        print_json(result)
        return 0
    line = (f"{result['mode']} refresh: {result['purchases']} purchases, {result['members']} members, "
            f"{result['pairs']} pair counts in {result['seconds']} s")  # fmt: skip
    if "recommendations_sent" in result:
        line += f"; recommendations sent for {result['recommendations_sent']} of {result['recommendations_members']} members"
    print(line)
    return 0

