"""Cloud migration 11 (issue 14): operator accounts, and the hash chain over HQ's audit log.

- ``operators``: who may use the HQ monitor and the commands that change things; the password only as
  a scrypt hash with its own salt and cost parameters, the TOTP secret (admins must have one), the
  last TOTP time step accepted (a code is good once), failed sign-ins in a row and a lockout deadline,
  an optional client-certificate fingerprint.
- ``operator_signins``: every sign-in attempt, good or bad.
- ``audit_log`` gains ``chain_seq``, ``prev_hash`` and ``row_hash`` (tenpo.shared.audit_chain); rows
  written before this migration are chained here in id order. Triggers refuse UPDATE (other than the
  sealing of a row not yet chained) and DELETE (and TRUNCATE on PostgreSQL).
- ``audit_chain_head``: the chain's last position and hash; its row is the lock appends take.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tenpo.cloud.db_types import column_types
from tenpo.shared.audit_chain import next_link

if TYPE_CHECKING:
    from tenpo.cloud.db import Central

AUDIT_FIELDS = ("id", "actor", "action", "subject", "detail", "at")
REFUSED = "audit_log is append-only: rows cannot be changed or deleted"


def statements(db: Central) -> list[str]:
    """Runs inside the migration's transaction: the columns are added and the old rows chained here."""
    t = column_types(db.dialect)
    for column, kind in (("chain_seq", t["int"]), ("prev_hash", "TEXT"), ("row_hash", "TEXT")):
        db.conn.execute(f"ALTER TABLE audit_log ADD COLUMN {column} {kind}")
    db.conn.execute("CREATE UNIQUE INDEX audit_log_chain ON audit_log(chain_seq)")
    db.conn.execute("CREATE INDEX audit_log_subject ON audit_log(subject, at)")
    db.conn.execute(f"CREATE TABLE audit_chain_head (chain TEXT PRIMARY KEY, seq {t['int']} NOT NULL, row_hash TEXT)")
    seq, head = 0, None
    for row in db.all(f"SELECT {', '.join(AUDIT_FIELDS)} FROM audit_log ORDER BY id"):
        link = next_link(seq, head, row)
        db.execute("UPDATE audit_log SET chain_seq = ?, prev_hash = ?, row_hash = ? WHERE id = ?",
                   (link.seq, link.prev_hash, link.row_hash, row[0]))  # fmt: skip
        seq, head = link.seq, link.row_hash
    db.execute("INSERT INTO audit_chain_head(chain, seq, row_hash) VALUES ('hq', ?, ?)", (seq, head))
    return [*_operator_tables(t), *_append_only(db.dialect)]


def _operator_tables(t: dict[str, str]) -> list[str]:
    return [
        f"""CREATE TABLE operators (
            name TEXT PRIMARY KEY,
            role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
            password_hash TEXT NOT NULL,     -- hex of hashlib.scrypt(password, salt, n, r, p)
            password_salt TEXT NOT NULL,     -- hex
            kdf_n {t['int']} NOT NULL,
            kdf_r {t['int']} NOT NULL,
            kdf_p {t['int']} NOT NULL,
            totp_secret TEXT,                -- base32; NULL: not enrolled (an admin cannot sign in)
            totp_last_step {t['int']} NOT NULL DEFAULT 0,  -- newest 30 s step accepted: a code is good once
            cert_sha256 TEXT,                -- fingerprint of the operator's client certificate (DER)
            failed_attempts {t['int']} NOT NULL DEFAULT 0,
            locked_until {t['real']},
            active INTEGER NOT NULL DEFAULT 1,
            created_at {t['real']} NOT NULL,
            updated_at {t['real']} NOT NULL)""",
        f"""CREATE TABLE operator_signins (
            id {t['id']},
            name TEXT NOT NULL,              -- as typed: unknown names are logged too
            ok INTEGER NOT NULL,
            reason TEXT NOT NULL,
            via TEXT NOT NULL,               -- monitor, cli, serve
            at {t['real']} NOT NULL)""",
        "CREATE INDEX operator_signins_at ON operator_signins(at)",
    ]


def _append_only(dialect: str) -> list[str]:
    if dialect == "postgresql":
        return [
            f"""CREATE FUNCTION tenpo_audit_append_only() RETURNS trigger AS $$ BEGIN
                IF TG_OP = 'UPDATE' AND OLD.row_hash IS NULL AND NEW.id = OLD.id AND NEW.actor = OLD.actor
                   AND NEW.action = OLD.action AND NEW.subject IS NOT DISTINCT FROM OLD.subject
                   AND NEW.detail IS NOT DISTINCT FROM OLD.detail AND NEW.at = OLD.at THEN
                    RETURN NEW;
                END IF;
                RAISE EXCEPTION '{REFUSED}';
                END $$ LANGUAGE plpgsql""",
            """CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
               FOR EACH ROW EXECUTE FUNCTION tenpo_audit_append_only()""",
            """CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
               FOR EACH STATEMENT EXECUTE FUNCTION tenpo_audit_append_only()""",
        ]
    return [
        f"""CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
            WHEN OLD.row_hash IS NOT NULL OR NEW.id IS NOT OLD.id OR NEW.actor IS NOT OLD.actor
              OR NEW.action IS NOT OLD.action OR NEW.subject IS NOT OLD.subject OR NEW.detail IS NOT OLD.detail
              OR NEW.at IS NOT OLD.at
            BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END""",
        f"""CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
            BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END""",
    ]
