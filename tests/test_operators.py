"""Issue 14: HQ operators sign in (password, TOTP for admins, or a client certificate) and roles decide
what they may do, in the HQ monitor and in the `tenpo cloud` commands; `--serve` keeps to loopback
unless it has TLS."""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from textual.widgets import Button, DataTable, Input, Static

from tenpo.cli import main
from tenpo.cloud.db import Central
from tenpo.cloud.hq import sim
from tenpo.cloud.hq.app import HqApp, StoresScreen
from tenpo.cloud.hq.config import MonitorConfig
from tenpo.cloud.hq.data import HqData
from tenpo.cloud.hq.serve import is_loopback, listen_context
from tenpo.cloud.hq.signin_screen import SignInScreen
from tenpo.cloud.operators import accounts
from tenpo.cloud.operators.accounts import Operator, SignInRefused, sign_in, totp_code
from tenpo.shared.errors import UserError
from tests.support.operators import FAST_KDF, PASSWORD, make_operator, stdin_for
from tests.test_hq_app import until


def tenpo(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenpo", *args], capture_output=True, text=True, input=stdin,
                          timeout=120)  # fmt: skip


@pytest.fixture
def central(central_url: str) -> Any:
    db = Central(central_url)
    yield db
    db.close()


def add(db: Central, name: str, role: str) -> str | None:
    accounts.add_operator(db, name, role, PASSWORD, kdf=FAST_KDF)
    return accounts.enrol_totp(db, name)[0] if role == "admin" else None


def signins(db: Central, name: str) -> list[tuple[int, str]]:
    return [(int(ok), reason) for ok, reason in db.all("SELECT ok, reason FROM operator_signins WHERE name = ? ORDER BY id",
                                                       (name,))]  # fmt: skip


# ---------------------------------------------------------------------------- accounts and sign-in


def test_password_is_stored_as_scrypt_with_its_own_parameters(central: Central) -> None:
    accounts.add_operator(central, "sato", "viewer", PASSWORD, kdf=(2**11, 8, 2))
    row = central.one("SELECT password_hash, password_salt, kdf_n, kdf_r, kdf_p FROM operators WHERE name = 'sato'")
    assert row is not None and PASSWORD.encode().hex() not in row[0] and (row[2], row[3], row[4]) == (2**11, 8, 2)
    assert sign_in(central, "sato", PASSWORD) == Operator("sato", "viewer")
    with pytest.raises(UserError, match="at least 12"):
        accounts.add_operator(central, "short", "viewer", "hunter2", kdf=FAST_KDF)


def test_an_admin_without_totp_cannot_sign_in(central: Central) -> None:
    accounts.add_operator(central, "root", "admin", PASSWORD, kdf=FAST_KDF)
    with pytest.raises(SignInRefused, match="admin without TOTP"):
        sign_in(central, "root", PASSWORD)
    secret, uri = accounts.enrol_totp(central, "root")
    assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri
    now = time.time()
    assert sign_in(central, "root", PASSWORD, totp_code(secret, now), now=now).role == "admin"


def test_wrong_and_reused_totp_codes_are_refused(central: Central) -> None:
    secret = add(central, "root", "admin")
    assert secret is not None
    now = 1_800_000_000.0
    good = totp_code(secret, now)
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    with pytest.raises(SignInRefused, match="wrong or expired TOTP"):
        sign_in(central, "root", PASSWORD, wrong, now=now)
    with pytest.raises(SignInRefused, match="needs a TOTP code"):
        sign_in(central, "root", PASSWORD, None, now=now)
    sign_in(central, "root", PASSWORD, good, now=now)
    with pytest.raises(SignInRefused, match="already used"):
        sign_in(central, "root", PASSWORD, good, now=now + 5)  # the same code, still within its window
    with pytest.raises(SignInRefused, match="wrong or expired"):
        sign_in(central, "root", PASSWORD, totp_code(secret, now - 300), now=now)  # five minutes old
    sign_in(central, "root", PASSWORD, totp_code(secret, now + 30), now=now + 30)  # the next step's code
    assert [r for _ok, r in signins(central, "root")] == ["bad_totp", "totp_missing", "ok", "reused_totp", "bad_totp", "ok"]


def test_lockout_after_five_failures_even_for_the_right_password(central: Central) -> None:
    add(central, "ops", "operator")
    now = 1_800_000_000.0
    for n in range(accounts.MAX_FAILED):
        with pytest.raises(SignInRefused, match="wrong name or password"):
            sign_in(central, "ops", f"not the password {n}", now=now + n)
    with pytest.raises(SignInRefused, match="locked"):
        sign_in(central, "ops", PASSWORD, now=now + 10)
    assert sign_in(central, "ops", PASSWORD, now=now + accounts.LOCK_S + 10).role == "operator"
    with pytest.raises(SignInRefused, match="wrong name or password"):  # an unknown name reads the same
        sign_in(central, "nobody", PASSWORD, now=now)


def self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))  # fmt: skip
    cert_path, key_path = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_path, key_path


def test_client_certificate_sign_in_needs_the_registered_certificate_and_its_key(central: Central, tmp_path: Path) -> None:
    add(central, "ops", "operator")
    cert, key = self_signed(tmp_path, "ops")
    other_cert, other_key = self_signed(tmp_path, "mallory")
    accounts.register_certificate(central, "ops", cert.read_bytes(), by="op:root")
    assert sign_in(central, "ops", None, certificate=(cert.read_bytes(), key.read_bytes())).name == "ops"
    for pair in ((other_cert, other_key), (cert, other_key)):  # another certificate; the right one without its key
        with pytest.raises(SignInRefused, match="not the one registered"):
            sign_in(central, "ops", None, certificate=(pair[0].read_bytes(), pair[1].read_bytes()))


# ---------------------------------------------------------------------------- the commands


def letter(url: str) -> int:
    db = Central(url)
    try:
        return sim.add_dead_letter(db, "S001", sim.events_topic("S001"), "bad signature", b"{}", time.time() - 60)
    finally:
        db.close()


def test_a_viewer_cannot_discard_a_dead_letter_an_operator_can(central_url: str) -> None:
    make_operator(central_url, "viewer1", "viewer")
    make_operator(central_url, "ops", "operator")
    dead = letter(central_url)
    refused = tenpo("cloud", "dead-letters", "discard", str(dead), "--note", "junk", "--operator", "viewer1",
                    "--db", central_url, stdin=stdin_for(None))  # fmt: skip
    assert refused.returncode == 1 and "viewer1 is a viewer: only an operator or an admin may discard" in refused.stderr
    missing = tenpo("cloud", "dead-letters", "discard", str(dead), "--note", "junk", "--db", central_url)
    assert missing.returncode == 1 and "needs a signed-in operator: add --operator NAME" in missing.stderr
    listed = json.loads(tenpo("cloud", "dead-letters", "--json", "--db", central_url).stdout)
    assert [(d["id"], d["status"]) for d in listed] == [(dead, "open")]
    done = tenpo("cloud", "dead-letters", "discard", str(dead), "--note", "junk", "--operator", "ops", "--db",
                 central_url, stdin=stdin_for(None))  # fmt: skip
    assert done.returncode == 0, done.stderr
    db = Central(central_url)
    assert db.scalar("SELECT status FROM dead_letters WHERE id = ?", (dead,)) == "discarded"
    assert db.one("SELECT actor FROM audit_log WHERE action = 'dead_letter.discarded'") == ("op:ops",)
    db.close()


def test_export_needs_an_admin_with_a_fresh_totp_code(sqlite_url: str, tmp_path: Path) -> None:
    secret = make_operator(sqlite_url, "root", "admin")
    make_operator(sqlite_url, "ops", "operator")
    out = tmp_path / "members.jsonl"
    as_operator = tenpo("cloud", "members", "export", "-o", str(out), "--operator", "ops", "--db", sqlite_url,
                        stdin=stdin_for(None))  # fmt: skip
    assert as_operator.returncode == 1 and "only an admin may export members" in as_operator.stderr
    wrong = tenpo("cloud", "members", "export", "-o", str(out), "--operator", "root", "--db", sqlite_url,
                  stdin=f"{PASSWORD}\n000000\n")  # fmt: skip
    assert wrong.returncode == 1 and "TOTP" in wrong.stderr and not out.exists()
    good = tenpo("cloud", "members", "export", "-o", str(out), "--operator", "root", "--db", sqlite_url,
                 stdin=stdin_for(secret))  # fmt: skip
    assert good.returncode == 0, good.stderr
    db = Central(sqlite_url)
    assert db.scalar("SELECT actor FROM audit_log WHERE action = 'operator.signed_in' ORDER BY id DESC LIMIT 1") == "op:root"
    db.close()


def test_operator_commands_bootstrap_an_admin_then_need_one(sqlite_url: str) -> None:
    Central(sqlite_url).close()
    first = tenpo("cloud", "operator", "add", "ops", "--role", "operator", "--db", sqlite_url, stdin=f"{PASSWORD}\n")
    assert first.returncode == 1 and "the first account must be an admin" in first.stderr
    root = tenpo("cloud", "operator", "add", "root", "--role", "admin", "--db", sqlite_url, stdin=f"{PASSWORD}\n")
    assert root.returncode == 0 and "enrol TOTP" in root.stdout
    enrol = tenpo("cloud", "operator", "totp", "root", "--db", sqlite_url, stdin=f"{PASSWORD}\n")
    assert enrol.returncode == 0 and enrol.stdout.startswith("otpauth://totp/Tenpo%20HQ:root?")
    secret = enrol.stdout.split("secret=")[1].split("&")[0].strip()
    unsigned = tenpo("cloud", "operator", "add", "ops", "--role", "operator", "--db", sqlite_url, stdin=f"{PASSWORD}\n")
    assert unsigned.returncode == 1 and "needs a signed-in operator" in unsigned.stderr
    signed = tenpo("cloud", "operator", "add", "ops", "--role", "operator", "--operator", "root", "--db", sqlite_url,
                   stdin=f"{stdin_for(secret)}{PASSWORD}x\n")  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    listed = {o["name"]: o for o in json.loads(tenpo("cloud", "operator", "list", "--json", "--db", sqlite_url).stdout)}
    assert (listed["root"]["role"], listed["root"]["totp"], listed["ops"]["role"], listed["ops"]["totp"]) == (
        "admin", True, "operator", False)


# ---------------------------------------------------------------------------- the HQ monitor


def monitor_db(tmp_path: Path) -> tuple[str, int]:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    db = Central(url)
    sim.seed_stores(db, 3)
    dead = sim.add_dead_letter(db, "S002", sim.events_topic("S002"), "bad signature", b"{}", sim.FIXED_NOW - 60)
    db.close()
    return url, dead


async def type_in(pilot: Any, selector: str, text: str) -> None:
    pilot.app.screen.query_one(selector, Input).value = text
    await pilot.pause()


async def press_sign_in(pilot: Any) -> None:
    """The button itself, not a click at its place: a toast over it on a busy screen would take a click."""
    pilot.app.screen.query_one("#signin", Button).press()
    await pilot.pause()


async def test_the_monitor_shows_nothing_before_sign_in_and_refuses_a_wrong_code(tmp_path: Path) -> None:
    url, _ = monitor_db(tmp_path)
    secret = make_operator(url, "root", "admin")
    app = HqApp(HqData(url, MonitorConfig(interval_s=3600), clock=lambda: sim.FIXED_NOW))
    async with app.run_test(size=(80, 24)) as pilot:
        assert isinstance(app.screen, SignInScreen)
        assert not app.query(DataTable) and app.stores_screen is None  # no store, no count, nothing of HQ
        await pilot.press("d")  # the stores screen's keys do nothing here
        assert isinstance(app.screen, SignInScreen)
        await type_in(pilot, "#name", "root")
        await type_in(pilot, "#password", PASSWORD)
        await type_in(pilot, "#code", "000000" if totp_code(secret or "", time.time()) != "000000" else "111111")
        await press_sign_in(pilot)
        error = app.screen.query_one("#signin-error", Static)
        await until(pilot, lambda: "TOTP" in str(error.render()), what="the refusal")
        assert isinstance(app.screen, SignInScreen) and app.operator is None
        await type_in(pilot, "#password", PASSWORD)
        await type_in(pilot, "#code", totp_code(secret or "", time.time()))
        await press_sign_in(pilot)
        # Generous: on a loaded machine the sign-in worker and the first refresh can take seconds.
        await until(pilot, lambda: isinstance(app.screen, StoresScreen), timeout=30,
                    what=f"the stores screen (the sign-in said {str(error.render())!r})")
        await until(pilot, lambda: app.screen.query_one("#stores", DataTable).row_count == 3, timeout=30,
                    what="the stores")  # fmt: skip
        assert app.operator == Operator("root", "admin")


async def test_a_viewer_in_the_monitor_is_told_why_a_discard_is_refused(tmp_path: Path) -> None:
    url, dead = monitor_db(tmp_path)
    make_operator(url, "watcher", "viewer")
    app = HqApp(HqData(url, MonitorConfig(interval_s=3600), clock=lambda: sim.FIXED_NOW))
    async with app.run_test(size=(80, 24)) as pilot:
        await type_in(pilot, "#name", "watcher")
        await type_in(pilot, "#password", PASSWORD)
        app.screen.query_one("#signin", Button).press()
        await until(pilot, lambda: isinstance(app.screen, StoresScreen), what="the stores screen")
        await pilot.press("d")
        await until(pilot, lambda: app.screen.query("#letters") and app.screen.query_one("#letters", DataTable).row_count,
                    what="the dead letters")  # fmt: skip
        await pilot.press("x")
        await until(pilot, lambda: any("refused" in str(n.message) for n in app._notifications), what="the refusal")
        assert any("watcher is a viewer: only an operator or an admin may discard dead letters" in str(n.message)
                   for n in app._notifications)  # fmt: skip
        assert not app.screen_stack[-1].query("#note")  # no note dialog opened
    db = Central(url)
    assert db.scalar("SELECT status FROM dead_letters WHERE id = ?", (dead,)) == "open"
    db.close()


# ---------------------------------------------------------------------------- --serve


def test_serve_beyond_loopback_without_tls_is_refused(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    Central(sqlite_url).close()
    done = tenpo("hq", "--serve", "--host", "0.0.0.0", "--db", sqlite_url)  # the real command: exit 1, no server
    assert done.returncode == 1 and "only over TLS" in done.stderr, done.stderr
    for host in ("::", "192.0.2.10", "hq.example.jp"):  # the same refusal in-process (no interpreter start each)
        assert main(["hq", "--serve", "--host", host, "--db", sqlite_url]) == 1, host
        assert "only over TLS" in capsys.readouterr().err, host
    assert all(is_loopback(h) for h in ("localhost", "127.0.0.1", "127.0.0.2", "::1", "[::1]"))
    assert listen_context("127.0.0.1", None, None) is None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_on_all_addresses_with_tls_answers_over_https_only(sqlite_url: str, tmp_path: Path) -> None:
    Central(sqlite_url).close()
    cert, key = self_signed(tmp_path, "hq")
    with pytest.raises(UserError, match="go together"):
        listen_context("0.0.0.0", cert, None)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tenpo", "hq", "--serve", "--host", "0.0.0.0", "--port", str(port),
                               "--https-cert", str(cert), "--https-key", str(key), "--db", sqlite_url, "--broker", "none"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        context = ssl.create_default_context(cafile=str(cert))
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                    with context.wrap_socket(raw, server_hostname="localhost") as tls:
                        tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                        answer = tls.recv(4096)
                break
            except (ConnectionRefusedError, ConnectionResetError):
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read() if server.stderr else ""
                time.sleep(0.2)
        assert answer.startswith(b"HTTP/1.1 200")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:  # plain HTTP gets no page
            raw.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert not raw.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        server.terminate()
        server.wait(timeout=30)
