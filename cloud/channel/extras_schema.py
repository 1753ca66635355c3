"""Points holds, member-app devices and member field clocks (HQ migration 18). Portable SQL.

- ``points_holds``: a web checkout's hold on a member's points (``held`` → ``captured`` | ``released`` |
  ``expired``). The hold itself is a ledger entry (kind ``hold``), so every balance HQ sends the stores
  already has it taken off; ``lot_end`` is the last good day of the soonest lot it took from, which the
  points get back if the hold is released (a hold never extends points' life).
- ``member_devices``: the member app's devices per channel; ``secret_issued_at`` says which secret a device
  was last given.
- ``member_field_clocks``: per member and field (``consent.PURPOSE`` for each consent purpose) the stamp of
  the edit that set it (hybrid logical time and origin) and its value: field-level last writer wins.
"""

from __future__ import annotations

from tenpo.cloud.db_types import column_types


def statements(dialect: str) -> list[str]:
    t = column_types(dialect)
    return [
        f"""CREATE TABLE points_holds (
            hold_id TEXT PRIMARY KEY,
            channel TEXT NOT NULL,
            member_id TEXT NOT NULL,
            amount {t['int']} NOT NULL CHECK (amount > 0),
            order_ref TEXT NOT NULL,
            state TEXT NOT NULL,
            seq {t['int']} NOT NULL,
            lot_end TEXT,
            earned {t['int']} NOT NULL DEFAULT 0,
            expires_at {t['real']} NOT NULL,
            created_at {t['real']} NOT NULL,
            updated_at {t['real']} NOT NULL)""",
        "CREATE INDEX points_holds_expiry ON points_holds(state, expires_at)",
        "CREATE INDEX points_holds_member ON points_holds(member_id, state)",
        f"""CREATE TABLE member_devices (
            channel TEXT NOT NULL,
            device_id TEXT NOT NULL,
            member_id TEXT NOT NULL,
            registered_at {t['real']} NOT NULL,
            secret_issued_at {t['real']} NOT NULL,
            PRIMARY KEY (channel, device_id))""",
        "CREATE INDEX member_devices_member ON member_devices(member_id)",
        f"""CREATE TABLE member_field_clocks (
            member_id TEXT NOT NULL,
            field TEXT NOT NULL,
            hlc {t['int']} NOT NULL,
            origin TEXT NOT NULL,
            value TEXT,
            PRIMARY KEY (member_id, field))""",
    ]


def delivery_statements(dialect: str) -> list[str]:
    """HQ migration 20: where each home delivery goes (tenpo.cloud.channel.deliveries, issue 18 §7); its
    reservation row holds the stock and the state."""
    t = column_types(dialect)
    return [
        f"""CREATE TABLE deliveries (
            reservation_id TEXT PRIMARY KEY,
            ordered_at TEXT NOT NULL,
            store_id TEXT NOT NULL,
            customer TEXT NOT NULL,
            address TEXT NOT NULL,
            phone TEXT,
            created_at {t['real']} NOT NULL)""",
    ]


# The feed entries that name a reservation's customer or a delivery's address (tenpo.cloud.channel.erasure)
FEED_KINDS_WITH_PEOPLE = "('delivery.upsert', 'reservation.upsert')"


def erasure_statements(dialect: str) -> list[str]:
    """HQ migration 21: a delivery row says when its person was erased; a member's erasure finds their
    reservations, and the feed entries naming them, by index (tenpo.cloud.channel.erasure)."""
    return [
        f"ALTER TABLE deliveries ADD COLUMN erased_at {column_types(dialect)['real']}",
        "CREATE INDEX reservations_member ON reservations(member_id)",
        f"CREATE INDEX changes_reservation_key ON changes(key) WHERE kind IN {FEED_KINDS_WITH_PEOPLE}",
    ]
