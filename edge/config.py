"""The store's TOML config: fixed keys ``[store] id, name, database`` and ``[broker] url``, plus tuning.

Chosen by ``--config`` or ``TENPO_CONFIG``. Every wrong or missing field raises one
:class:`ConfigError` naming the file and the field.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenpo.edge import keystore
from tenpo.shared.errors import ConfigError
from tenpo.shared.mqtt import BrokerUrl, TlsFiles, parse_broker_url
from tenpo.shared.protocol import valid_store_id

MAX_CONFIG_TEXT = 4096  # PATH_MAX: no name, path or URL in the store config is longer (issue 14)


@dataclass(frozen=True, slots=True)
class SyncSettings:
    batch_size: int = 500  # events per upstream batch
    max_inflight_batches: int = 4  # batches sent but not yet acknowledged
    ack_timeout_s: float = 5.0  # resend from the acknowledged mark when HQ says nothing this long
    pull_interval_s: float = 15.0  # ask for the change feed this often even when nothing was pushed
    status_interval_s: float = 10.0  # backlog/clock report to HQ
    poll_interval_s: float = 0.1  # how often the agent looks for writes made by other processes


@dataclass(frozen=True, slots=True)
class StoreConfig:
    path: Path
    store_id: str
    name: str
    database: Path
    broker: BrokerUrl
    tls: TlsFiles
    private_key: Path
    public_key: Path
    sync: SyncSettings = field(default_factory=SyncSettings)
    raw: dict[str, Any] = field(default_factory=dict)  # whole file, for sections other areas own

    def section(self, name: str) -> dict[str, Any]:
        value = self.raw.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{self.path}: [{name}] must be a table")
        return value


def config_path(explicit: str | None) -> Path:
    chosen = explicit or os.environ.get("TENPO_CONFIG")
    if not chosen:
        raise ConfigError("no store config: pass --config FILE or set TENPO_CONFIG")
    return Path(chosen)


def load_config(explicit: str | None = None) -> StoreConfig:
    path = config_path(explicit)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {path}: cannot read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path}: not valid TOML ({exc})") from None
    config = parse_config(raw, path)
    # The key that opens this store's personal data: [keys] data, else beside the database (issue 14).
    keystore.configure(config.database, keystore.configured_key_path(config.database, config.section("keys"), path.parent))
    return config


def parse_config(raw: dict[str, Any], path: Path) -> StoreConfig:
    def fail(key: str, why: str) -> ConfigError:
        return ConfigError(f"config {path}: {key}: {why}")

    def table(name: str, required: bool) -> dict[str, Any]:
        value = raw.get(name)
        if value is None:
            if required:
                raise fail(f"[{name}]", "missing section")
            return {}
        if not isinstance(value, dict):
            raise fail(f"[{name}]", "must be a table")
        return value

    def text(section: dict[str, Any], key: str, name: str, required: bool = True) -> str | None:
        value = section.get(key)
        if value is None:
            if required:
                raise fail(name, "missing")
            return None
        if not isinstance(value, str) or not value.strip():
            raise fail(name, f"must be a non-empty string, got {repr(value)[:80]}")
        if len(value.strip()) > MAX_CONFIG_TEXT:  # issue 14: long fields bounded on input
            raise fail(name, f"{len(value.strip())} characters, at most {MAX_CONFIG_TEXT}")
        return value.strip()

    store = table("store", required=True)
    store_id = text(store, "id", "store.id")
    assert store_id is not None
    if not valid_store_id(store_id):
        raise fail("store.id", f"{store_id!r} may only use letters, digits, '-' and '_' (1-32)")
    name = text(store, "name", "store.name")
    database = Path(text(store, "database", "store.database") or "")
    if not database.is_absolute():
        database = (path.parent / database).resolve()

    broker_section = table("broker", required=True)
    broker_url = text(broker_section, "url", "broker.url")
    broker = parse_broker_url(broker_url or "", "broker.url")
    tls = TlsFiles(
        *(
            Path(value) if (value := text(broker_section, key, f"broker.{key}", required=False)) else None
            for key in ("ca", "cert", "key")
        )
    )

    keys = table("keys", required=False)
    private = text(keys, "private", "keys.private", required=False)
    public = text(keys, "public", "keys.public", required=False)
    private_key = Path(private) if private else database.with_suffix(".key")
    public_key = Path(public) if public else database.with_suffix(".pub")

    sync_raw = table("sync", required=False)
    defaults = SyncSettings()
    values: dict[str, Any] = {}
    for key in SyncSettings.__dataclass_fields__:
        if key not in sync_raw:
            continue
        value = sync_raw[key]
        expected = type(getattr(defaults, key))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise fail(f"sync.{key}", f"must be a positive number, got {value!r}")
        values[key] = expected(value)
    unknown = set(sync_raw) - set(SyncSettings.__dataclass_fields__)
    if unknown:
        raise fail(f"sync.{sorted(unknown)[0]}", "unknown setting")

    return StoreConfig(
        path=path,
        store_id=store_id,
        name=name or store_id,
        database=database,
        broker=broker,
        tls=tls,
        private_key=private_key,
        public_key=public_key,
        sync=SyncSettings(**values),
        raw=raw,
    )
