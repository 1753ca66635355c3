"""Certificates are renewed before they expire: `tenpo provision renew` issues a new one for the same
store, `tenpo edge status` warns when the store's certificate expires within N days (text and
--json), and the HQ monitor shows the warning from the expiry the store reports in its birth."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tenpo.cli import main
from tenpo.cloud.db import Central
from tenpo.cloud.hq.app import HqApp
from tenpo.cloud.hq.config import MonitorConfig
from tenpo.cloud.hq.data import HqData
from tenpo.sandbox import Mosquitto, aggregator_process, provision_store, store_process, tenpo_command, wait_until
from tenpo.shared import pki
from tests.support.operators import TEST_ADMIN

ACL = Path(__file__).resolve().parents[1] / "firmware-config" / "broker" / "acl"


def cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.fixture
def pki_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "pki"
    assert main(["provision", "ca", "--dir", str(directory)]) == 0
    assert main(["provision", "broker", "--dir", str(directory), "--host", "127.0.0.1"]) == 0
    assert main(["provision", "hq", "hq-aggregator-1", "--dir", str(directory)]) == 0
    pki.issue(directory, "S001", days=10)  # a store whose certificate runs out in ten days
    (directory / "acl").write_text(ACL.read_text())
    return directory


def edge_status(config_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(tenpo_command("edge", "status", "--config", str(config_path), *extra),
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_renew_issues_a_new_key_and_certificate_for_the_same_store(pki_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old_cert, old_key = cert(pki_dir / "S001.crt"), (pki_dir / "S001.client.key").read_bytes()
    assert main(["provision", "renew", "S001", "--dir", str(pki_dir)]) == 0
    new_cert = cert(pki_dir / "S001.crt")
    assert new_cert.subject == old_cert.subject, "same identity: the broker ACL still applies"
    assert new_cert.serial_number != old_cert.serial_number
    assert (pki_dir / "S001.client.key").read_bytes() != old_key, "a new key pair"
    assert (new_cert.not_valid_after_utc - old_cert.not_valid_after_utc).days > 800
    assert "valid until" in capsys.readouterr().out
    assert main(["provision", "renew", "S404", "--dir", str(pki_dir)]) != 0
    assert "no S404.crt" in capsys.readouterr().err
    assert main(["provision", "renew", "broker", "--dir", str(pki_dir)]) != 0
    assert "tenpo provision broker --host" in capsys.readouterr().err


def test_edge_status_warns_before_the_store_certificate_expires(tmp_path: Path, pki_dir: Path, sqlite_url: str) -> None:
    extra = {"ca": str(pki_dir / "ca.pem"), "cert": str(pki_dir / "S001.crt"), "key": str(pki_dir / "S001.client.key")}
    config_path = provision_store(tmp_path / "S001", "S001", "mqtts://127.0.0.1:8883", sqlite_url, broker_extra=extra)

    result = edge_status(config_path, "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert 9 <= status["certificate"]["days_left"] <= 10
    assert [a for a in status["alerts"] if "store certificate expires in" in a and "renew" in a]

    text = edge_status(config_path)
    assert text.returncode == 0 and "store certificate expires in" in text.stdout
    line = next(row for row in text.stdout.splitlines() if row.startswith("certificate "))
    assert "expires " in line and "days)" in line, line
    quiet = json.loads(edge_status(config_path, "--json", "--cert-warn-days", "5").stdout)
    assert not [a for a in quiet["alerts"] if "certificate" in a], "outside the configured window: no warning"

    assert main(["provision", "renew", "S001", "--dir", str(pki_dir)]) == 0
    renewed = json.loads(edge_status(config_path, "--json").stdout)
    assert renewed["certificate"]["days_left"] > 800 and not [a for a in renewed["alerts"] if "certificate" in a]


def summary(app: HqApp) -> str:
    return str(app.stores_screen.query_one("#summary").render())


async def until(pilot: Any, predicate: Any, timeout: float = 10.0, what: str = "") -> None:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.01)


async def test_hq_monitor_warns_about_a_store_certificate_from_the_birth(
    tmp_path: Path, pki_dir: Path, sqlite_url: str
) -> None:
    broker = Mosquitto(tmp_path, tls_dir=pki_dir).start()
    try:
        extra = {"ca": str(pki_dir / "ca.pem"), "cert": str(pki_dir / "S001.crt"), "key": str(pki_dir / "S001.client.key")}
        config_path = provision_store(tmp_path / "S001", "S001", broker.url, sqlite_url, broker_extra=extra)
        aggregator = aggregator_process(
            sqlite_url, broker.url, tmp_path / "agg.log", client_id="hq-aggregator-1",
            tls=(pki_dir / "ca.pem", pki_dir / "hq-aggregator-1.crt", pki_dir / "hq-aggregator-1.client.key"),
        ).start()  # fmt: skip
        agent = store_process(config_path).start()
        central = Central(sqlite_url)
        expires = cert(pki_dir / "S001.crt").not_valid_after_utc.timestamp()
        wait_until(lambda: central.scalar("SELECT not_after FROM store_certificates WHERE store_id = 'S001'"), 60,
                   what="the birth's certificate expiry at HQ")  # fmt: skip
        assert abs(central.scalar("SELECT not_after FROM store_certificates WHERE store_id = 'S001'") - expires) < 1
        central.close()
        agent.terminate()
        aggregator.terminate()
    finally:
        broker.stop()

    app = HqApp(HqData(sqlite_url, MonitorConfig(interval_s=3600)), operator=TEST_ADMIN)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.stores_screen is not None and app.stores_screen.refreshes > 0, what="a refresh")
        assert summary(app).startswith("certificate expiring: S001 in 9d"), summary(app)
