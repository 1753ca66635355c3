"""Cloud migration 10: store authority (docs/authority.md).

- ``authority_held``: points entries waiting for the sale they name, which the store wrote right after
  them but which arrived in a later batch; released or refused when it comes, refused when the stream
  moves ``link_window`` events past them without it;
- ``authority_alerts``: every refusal, per store, for the HQ monitor and `tenpo cloud authority`;
- ``authority_edits``: the contact edits a store made to other stores' members (with the clerk), which
  the hourly limit counts; ``edited_id`` is the member id as the store sent it (not ``member_id``, so a
  merge, which moves every table's ``member_id``, leaves this record of what was said alone).

Portable SQL: the same statements run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from tenpo.cloud.db_types import column_types


def statements(dialect: str) -> list[str]:
    t = column_types(dialect)
    return [
        f"""CREATE TABLE authority_held (
            store_id TEXT NOT NULL,
            stream TEXT NOT NULL,
            seq {t['int']} NOT NULL,
            event_id TEXT NOT NULL,
            hlc {t['int']} NOT NULL,
            ref TEXT NOT NULL,
            payload TEXT NOT NULL,
            held_at {t['real']} NOT NULL,
            PRIMARY KEY (store_id, stream, seq))""",
        f"""CREATE TABLE authority_alerts (
            id {t['id']},
            store_id TEXT NOT NULL,
            rule TEXT NOT NULL,
            event_seq {t['int']},
            detail TEXT NOT NULL,
            at {t['real']} NOT NULL)""",
        "CREATE INDEX authority_alerts_store ON authority_alerts(store_id, at)",
        "CREATE INDEX authority_alerts_at ON authority_alerts(at)",
        f"""CREATE TABLE authority_edits (
            id {t['id']},
            store_id TEXT NOT NULL,
            edited_id TEXT NOT NULL,
            clerk_id TEXT NOT NULL,
            fields TEXT NOT NULL,
            event_seq {t['int']} NOT NULL,
            at {t['real']} NOT NULL)""",
        "CREATE INDEX authority_edits_store ON authority_edits(store_id, at)",
    ]
