"""This area's `tenpo edge ...` subcommands."""

from __future__ import annotations

import argparse

import msgspec

from tenpo.edge.cli_support import json_flag, open_store, print_json, with_config

from .keys_cli import register_keys
from .rules import current_rules


def register_edge(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add subcommands to the `tenpo edge` group."""
    rules = with_config(commands.add_parser("rules", help="the chain's registration rules this store holds (from HQ)"))
    json_flag(rules)
    rules.set_defaults(func=cmd_rules)
    register_keys(commands)


def cmd_rules(args: argparse.Namespace) -> int:
    _config, db = open_store(args)
    rules = current_rules(db.conn)
    if args.json:
        print_json(None if rules is None else msgspec.to_builtins(rules))
    elif rules is None:
        print("no rules from HQ yet: a registration needs a name")
    else:
        print(f"required        {', '.join(rules.required) or '-'}")
        print(f"mobile only     {'yes' if rules.mobile_only else 'no'}")
        print(f"contact any of  {', '.join(rules.contact_any_of) or '-'}")
        print(f"consent text    {rules.consent_text or '-'}")
        print(f"(HQ change #{rules.version}; kept while the store is offline)")
    return 0
