"""`tenpo cloud members review|train|quality|rules`: the review queue, trained weights, the
data-quality report and the counter's registration rules. Thin: parse, call, print."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import msgspec

from tenpo.cloud.cli_support import db_flag, print_json
from tenpo.cloud.db import Central

from .config import load_rules
from .quality import quality_chart, quality_report
from .review import ReviewItem, pending_items
from .review_actions import decide_item
from .rules import current_rules, parse_rules_file, set_rules
from .weights import configured, train


def register_members(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add subcommands to the `tenpo cloud members` group."""
    review = db_flag(sub.add_parser("review", help="possible matches waiting for a person: list, accept, reject"))
    review.add_argument("--json", action="store_true")
    review.add_argument("--limit", type=int, default=50, help="show at most N items (default 50)")
    review.set_defaults(func=cmd_review)
    decisions = review.add_subparsers(dest="review_command", metavar="accept|reject")
    for verb, text in (("accept", "the two are one person: merge them (audited, sent to the stores)"),
                       ("reject", "the two are different people: never asked again, never merged automatically")):
        decide = db_flag(decisions.add_parser(verb, help=text))
        decide.add_argument("item", type=int, metavar="ITEM", help="item id from `tenpo cloud members review`")
        decide.add_argument("--note", help="why (kept in the audit log)")
        decide.add_argument("--by", default="operator", metavar="OPERATOR", help="who decided (default: operator)")
        decide.add_argument("--rules", type=Path, help="TOML members rules (as for imports)")
        decide.add_argument("--json", action="store_true")
        decide.set_defaults(func=cmd_review_decide, accept=verb == "accept")
    train = db_flag(sub.add_parser("train", help="estimate match weights from the chain's records (EM) and store them;"
                                                " used only with [identity] weights = \"trained\""))
    train.add_argument("--truth", type=Path, metavar="FILE",
                       help="CSV source_id,person[,source]: precision/recall of hand-set and trained weights")
    train.add_argument("--rules", type=Path, help="TOML members rules (blocking and thresholds)")
    train.add_argument("--random-pairs", type=int, default=20000, metavar="N", help="random pairs for u (default 20000)")
    train.add_argument("--json", action="store_true")
    train.set_defaults(func=cmd_train)
    quality = db_flag(sub.add_parser("quality", help="data quality per source and field: valid, corrected, flagged,"
                                                    " missing; duplicates merged, pending reviews, trend across imports"))
    quality.add_argument("--json", action="store_true")
    quality.add_argument("--chart", type=Path, metavar="FILE.png", help="also draw it (needs the hq extra)")
    quality.set_defaults(func=cmd_quality)
    rules = sub.add_parser("rules", help="the counter's registration rules, sent to every store")
    rules_sub = rules.add_subparsers(dest="rules_command", metavar="COMMAND")
    rules_sub.required = True
    show = db_flag(rules_sub.add_parser("show", help="the rules the stores were last sent"))
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_rules_show)
    put = db_flag(rules_sub.add_parser("set", help="set the rules from a TOML file (docs/members.md) and send them"))
    put.add_argument("--file", type=Path, required=True, help="TOML: required, mobile_only, contact_any_of, consent_text")
    put.add_argument("--by", default="operator", metavar="OPERATOR")
    put.set_defaults(func=cmd_rules_set)


def _comparison_text(item: ReviewItem) -> str:
    return ", ".join(f"{f} {level} {w:+g}" for f, level, w in item.comparisons if w)


def cmd_review(args: argparse.Namespace) -> int:
    items = pending_items(Central(args.db, create=False), limit=args.limit)
    if args.json:
        print_json([item.as_json() for item in items])
        return 0
    if not items:
        print("no possible matches waiting")
        return 0
    for item in items:
        print(f"#{item.item_id}  score {item.score:g}  {item.left_member} ({':'.join(item.left)})"
              f"  ?  {item.right_member} ({':'.join(item.right)})")  # fmt: skip
        print(f"    {_comparison_text(item)}")
        for side in (item.left_values, item.right_values):
            print("    " + "  ".join(f"{k} {v}" for k, v in (side or {}).items()))
    print("decide: tenpo cloud members review accept|reject ITEM [--note TEXT]", file=sys.stderr)
    return 0


def cmd_review_decide(args: argparse.Namespace) -> int:
    db = Central(args.db, create=False)
    config = configured(db, load_rules(args.rules))
    done = decide_item(db, args.item, args.accept, actor=args.by, note=args.note,
                       config=config)  # fmt: skip
    if args.json:
        print_json(done.as_json())
    elif done.merge_id is not None:
        print(f"#{done.item_id} accepted: merged {done.loser} into {done.winner} (merge #{done.merge_id}); the stores follow")
    else:
        print(f"#{done.item_id} {done.status}" + (" (already one member)" if args.accept else ""))
    return 0



def cmd_train(args: argparse.Namespace) -> int:
    report = train(Central(args.db, create=False), load_rules(args.rules), args.truth, random_pairs=args.random_pairs)
    if args.json:
        print_json(report)
        return 0
    print(f"{report['records']} records, {report['candidate_pairs']} candidate pairs ({report['patterns']} patterns),"
          f" match share {report['match_share']:.3f}, {report['iterations']} EM iterations"
          + ("" if report["converged"] else " (not converged)"))  # fmt: skip
    print(f"{'field':<11}{'level':<15}{'m':>8}{'u':>10}{'trained':>9}{'hand':>7}")
    for row in report["levels"]:
        m = "-" if row["m"] is None else f"{row['m']:.4f}"
        u = "-" if row["u"] is None else f"{row['u']:.5f}"
        print(f"{row['field']:<11}{row['level']:<15}{m:>8}{u:>10}{row['trained']:>+9.2f}{row['hand']:>+7.1f}")
    for name in ("hand", "trained"):
        if name in report:
            q = report[name]
            print(f"{name:<8} precision {q['precision']:.4f}  recall {q['recall']:.4f}"
                  f"  ({q['found_pairs']} pairs found, {q['true_pairs']} true)")  # fmt: skip
    print('stored; used when the members rules say [identity] weights = "trained"')
    return 0


def cmd_rules_show(args: argparse.Namespace) -> int:
    rules = current_rules(Central(args.db, create=False))
    if args.json:
        print_json(None if rules is None else msgspec.to_builtins(rules))
        return 0
    if rules is None:
        print("no rules set: stores use their defaults (a name is required)")
        return 0
    print(f"required        {', '.join(rules.required) or '-'}")
    print(f"mobile only     {'yes' if rules.mobile_only else 'no'}")
    print(f"contact any of  {', '.join(rules.contact_any_of) or '-'}")
    print(f"consent text    {rules.consent_text or '-'}")
    print(f"(change #{rules.version})")
    return 0


def cmd_rules_set(args: argparse.Namespace) -> int:
    seq = set_rules(Central(args.db, create=False), parse_rules_file(args.file), args.by)
    print(f"rules set (change #{seq}); every store receives them, and keeps them while offline")
    return 0


def cmd_quality(args: argparse.Namespace) -> int:
    report = quality_report(Central(args.db, create=False))
    if args.chart is not None:
        quality_chart(report, args.chart)
    if args.json:
        print_json(report)
        return 0
    print(f"{report['records']} source records, {report['members']} members ({report['duplicates_merged']} duplicates"
          f" merged), {report['pending_reviews']} possible matches waiting for review")  # fmt: skip
    print(f"{'source':<14}{'field':<13}{'valid':>7}{'corr.':>7}{'unver.':>7}{'flag.':>7}{'miss.':>7}")
    for source in report["sources"]:
        for field, data in source["fields"].items():
            shares = data["shares"]
            print(f"{source['source']:<14}{field:<13}" + "".join(f"{shares[s]:>7.1%}" for s in shares))
        print(f"{'':<14}{source['records']} records, {source['merged_duplicates']} in merged members,"
              f" {source['pending_reviews']} pending reviews")  # fmt: skip
    for t in report["trend"]:
        print(f"import #{t['import_id']} {t['file']}: {t['rows']} rows, {t['rejected']} rejected,"
              f" of the values given: valid {t['present_shares']['valid']:.1%}, corrected {t['present_shares']['corrected']:.1%},"
              f" flagged {t['present_shares']['flagged']:.1%}")  # fmt: skip
    if args.chart is not None:
        print(f"chart: {args.chart}")
    return 0
