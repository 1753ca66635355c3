"""Operator accounts for tests of commands that need one (issue 14): create the account, and answer its
sign-in with the real password and a real TOTP code, so the check that runs is the production one."""

from __future__ import annotations

import time
from typing import Any

from tenpo.cloud.db import Central
from tenpo.cloud.operators import accounts
from tenpo.cloud.operators import cli as operators_cli
from tenpo.cloud.operators.accounts import Operator

PASSWORD = "correct horse battery staple"
FAST_KDF = (2**10, 8, 1)  # stored with the hash: sign-in uses the account's own parameters


def make_operator(url: str, name: str = "root", role: str = "admin") -> str | None:
    """Create the account (TOTP enrolled for an admin); returns the TOTP secret, if any."""
    db = Central(url)
    try:
        if not db.scalar("SELECT 1 FROM operators WHERE name = ?", (name,)):
            accounts.add_operator(db, name, role, PASSWORD, kdf=FAST_KDF)
        return accounts.enrol_totp(db, name)[0] if role == "admin" else None
    finally:
        db.close()


class SteppingClock:
    """Each sign-in happens in the next 30 s TOTP step, so one admin can run several commands in a test
    (a code is good once per step)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def step(self) -> float:
        self.now += accounts.TOTP_STEP
        return self.now


def sign_in_as(monkeypatch: Any, url: str, name: str = "root", role: str = "admin") -> list[str]:
    """For in-process ``main([...])`` calls: the account exists, and its sign-in is answered with the real
    password and the TOTP code of the moment. Returns the flags to add: ``["--operator", name]``."""
    secret = make_operator(url, name, role)
    clock = SteppingClock()
    monkeypatch.setattr(accounts, "CLOCK", clock)

    def credentials(who: str, db: Central) -> tuple[str, str | None]:
        at = clock.step()
        return PASSWORD, (accounts.totp_code(secret, at) if secret else None)

    monkeypatch.setattr(operators_cli, "credentials", credentials)
    return ["--operator", name]


def stdin_for(secret: str | None) -> str:
    """Standard input for one ``tenpo`` subprocess signing in now: the password, then the TOTP code."""
    return f"{PASSWORD}\n" + (f"{accounts.totp_code(secret, time.time())}\n" if secret else "")


# The HQ monitor built by a test, already signed in (the constructor argument; `tenpo hq` never passes one).
TEST_ADMIN = Operator("test-admin", "admin")
