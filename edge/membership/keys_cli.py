"""`tenpo edge keys status|rotate [--data]`: the keys that seal the store's personal data (docs/encryption.md).

Whoever can run these can read the key file already (the store's service account): they need no clerk.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import sqlite_utils

from tenpo.edge import keystore
from tenpo.edge.cli_support import json_flag, open_store, print_json, with_config
from tenpo.edge.db import transaction
from tenpo.shared import pii
from tenpo.shared.errors import UserError

from . import sealing


def register_keys(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser("keys", help="the keys that encrypt members' personal data at rest")
    sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND")
    sub.required = True
    status = with_config(sub.add_parser("status", help="where the key comes from, key ids, whether it opens the data"))
    json_flag(status)
    status.set_defaults(func=cmd_keys_status)
    rotate = with_config(sub.add_parser(
        "rotate", help="new key-encryption key wrapping the same data key (instant); --data: a new data key too"))
    rotate.add_argument("--data", action="store_true",
                        help="a new data key: every value sealed again and every index rebuilt, in one transaction")
    rotate.add_argument("--new-key", metavar="FILE", type=Path,
                        help="write the new key-encryption key here (needed when the key is a systemd credential)")
    json_flag(rotate)
    rotate.set_defaults(func=cmd_keys_rotate)


def cmd_keys_status(args: argparse.Namespace) -> int:
    _config, db = open_store(args)
    try:
        found = keystore.status(db.conn)
        report = {
            "source": found.source, "kek_id": found.kek_id, "dek_id": found.dek_id, "opens": found.opens,
            "problem": found.problem, "created_at": found.created_at, "kek_rotated_at": found.kek_rotated_at,
            "dek_rotated_at": found.dek_rotated_at, "plaintext_members": sealing.plaintext_left(db.conn),
        }  # fmt: skip
    finally:
        db.conn.close()
    if args.json:
        print_json(report)
    else:
        print(f"key from        {found.source}")
        print(f"key-encryption  {found.kek_id}   (rotated {_when(found.kek_rotated_at)})")
        print(f"data key        {found.dek_id}   (rotated {_when(found.dek_rotated_at)})")
        print(f"opens the data  {'yes' if found.opens else 'NO: ' + str(found.problem)}")
        print(f"plaintext rows  {report['plaintext_members']}")
    return 0 if found.opens else 1


def _when(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else "never"


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    config, db = open_store(args)
    try:
        conn = db.conn
        source = keystore.source_for(str(config.database))
        report: dict[str, object] = {"source": source.describe()}
        started = time.monotonic()
        if args.data:
            new = pii.Codec(pii.new_key())
            with transaction(db) as tx:
                old = keystore.codec(tx)
                keystore.replace_data_key(tx, new.dek)
                report["resealed"] = sealing.reseal_all(tx, old, new)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the old values' pages leave the WAL too
            report["dek_id"] = new.key_id
        if not args.data or args.new_key is not None:
            report.update(_rotate_kek(db, source, args.new_key))
        report["seconds"] = round(time.monotonic() - started, 3)
    finally:
        db.conn.close()
    if args.json:
        print_json(report)
    else:
        for key, value in report.items():
            print(f"{key:<15} {value}")
    return 0


def _rotate_kek(db: sqlite_utils.Database, source: keystore.KeySource, new_key: Path | None) -> dict[str, object]:
    """Write the new KEK beside the old one, re-wrap the data key (one commit), then put the new key in
    place; an interruption between the commit and the rename is found again at ``<file>.new``."""
    if new_key is not None:
        if new_key.exists():
            raise UserError(f"--new-key {new_key}: already exists; name a new file")
        kek = pii.new_key()
        keystore.write_key_file(new_key, kek)
        with transaction(db) as conn:
            keystore.rewrap(conn, kek)
        hint = ("" if source.kind != "credential" else
                f"; now seal it for systemd: systemd-creds encrypt --name={keystore.CREDENTIAL_NAME} {new_key} "
                f"/etc/credstore.encrypted/{keystore.CREDENTIAL_NAME}, restart tenpo-edge, then shred {new_key}")
        return {"kek_id": pii.fingerprint(kek), "key_file": f"{new_key}{hint}"}
    if source.kind != "file" or source.path is None:
        raise UserError(f"the key comes from the {source.describe()}: pass --new-key FILE to write the new key there")
    pending = source.path.with_name(source.path.name + ".new")
    if pending.exists():
        (held,) = db.conn.execute("SELECT kek_id FROM pii_keys WHERE id = 1").fetchone()
        if pii.fingerprint(keystore.read_kek(keystore.KeySource("file", pending))) == held:
            os.replace(pending, source.path)  # a rotation committed but not renamed: finish it first
        else:
            pending.unlink()  # a rotation that stopped before its commit: that key wraps nothing
    kek = pii.new_key()
    keystore.write_key_file(pending, kek)
    with transaction(db) as conn:
        keystore.rewrap(conn, kek)
    os.replace(pending, source.path)
    keystore.fsync_dir(source.path.parent)
    return {"kek_id": pii.fingerprint(kek), "key_file": str(source.path)}
