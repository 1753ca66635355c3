"""The printer adapter and `tenpo edge checkout` / `receipt reprint` against a fake ESC/POS printer on
a real PTY: it answers DLE EOT status queries like a TM printer and records every other byte."""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from textual.app import App

from tenpo.cli import main
from tenpo.edge.checkout.store import load_sale
from tenpo.edge.clerk.receipt_view import ReceiptScreen
from tenpo.edge.config import StoreConfig, load_config
from tenpo.edge.printer import escpos
from tenpo.edge.printer.receipt import REPRINT_MARK, print_receipt
from tenpo.sandbox import wait_until
from tests.support.clerks import AS_CLERK, add_store_clerks, pins_on_stdin
from tests.test_checkout_store import ONIGIRI, store  # noqa: F401 - the seeded store fixture
from tests.test_hq_app import until

READY, PAPER_OUT = 0x12, 0x72
QUERIES = escpos.STATUS_PRINTER + escpos.STATUS_PAPER


class FakePrinter:
    """The printer end of a PTY; the adapter opens ``port`` (the slave) with pyserial."""

    def __init__(self, paper: int | None = READY) -> None:
        self.paper = paper  # the DLE EOT 4 reply; None: switched off (no replies at all)
        self.received = bytearray()
        self.master, self._slave = os.openpty()  # the slave stays open here, so the master never sees EIO
        self.port = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pending = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            data = os.read(self.master, 4096)
            self.received += data
            pending = (pending + data)[-3:]
            if self.paper is not None and pending == escpos.STATUS_PRINTER:
                os.write(self.master, bytes((READY,)))
                pending = b""
            elif self.paper is not None and pending == escpos.STATUS_PAPER:
                os.write(self.master, bytes((self.paper,)))
                pending = b""

    def job(self) -> bytes:
        """What arrived after the status queries."""
        data = bytes(self.received)
        return data[len(QUERIES):] if data.startswith(QUERIES) else data

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        os.close(self.master)
        os.close(self._slave)


@pytest.fixture
def printer() -> Iterator[FakePrinter]:
    fake = FakePrinter()
    yield fake
    fake.close()


def with_printer(config_path: Path, port: str, **extra: object) -> None:
    lines = [f'port = "{port}"', *(f"{key} = {value}" for key, value in extra.items())]
    config_path.write_text(config_path.read_text() + "[printer]\n" + "\n".join(lines) + "\n")


def ends_with_cut(job: bytes) -> bool:
    return job.endswith(b"\x1dVB\x00")


def test_a_cash_sale_prints_its_stored_receipt_and_opens_the_drawer(store, printer: FakePrinter, capsys,  # noqa: F811
                                                                    monkeypatch) -> None:  # fmt: skip
    path, config, db = store
    add_store_clerks(config.database)
    pins_on_stdin(monkeypatch)
    with_printer(path, printer.port)
    assert main(["edge", "checkout", "--config", str(path), "--scan", ONIGIRI, "--pay", "cash:200", *AS_CLERK]) == 0
    out = capsys.readouterr()
    stored = load_sale(db, "S001", "S001-00000001")
    assert stored is not None and out.out == stored.receipt and out.err == "", "the text receipt is still shown"
    wait_until(lambda: printer.job().endswith(escpos.drawer_kick()), 10, what="the job to reach the printer")
    assert bytes(printer.received).startswith(QUERIES), "offline and paper are checked before printing"
    assert printer.job() == escpos.receipt_job(stored.receipt, open_drawer=True)
    assert "おにぎり 鮭".encode("shift_jis") in printer.job()


def test_paper_out_keeps_the_sale_tells_the_clerk_and_a_reprint_prints_it(store, printer: FakePrinter, capsys,  # noqa: F811
                                                                         monkeypatch) -> None:  # fmt: skip
    path, config, db = store
    add_store_clerks(config.database)
    pins_on_stdin(monkeypatch)
    with_printer(path, printer.port)
    printer.paper = PAPER_OUT
    assert main(["edge", "checkout", "--config", str(path), "--scan", ONIGIRI, "--pay", "card:160", *AS_CLERK]) == 0
    err = capsys.readouterr().err
    assert "paper out" in err and "tenpo edge receipt reprint S001-00000001" in err
    assert load_sale(db, "S001", "S001-00000001") is not None, "the sale is kept"
    assert bytes(printer.received) == QUERIES, "nothing printed onto an empty roll"

    printer.paper = READY  # paper loaded
    printer.received.clear()
    assert main(["edge", "receipt", "reprint", "1", "--config", str(path), *AS_CLERK]) == 0
    wait_until(lambda: ends_with_cut(printer.job()), 10, what="the reprint")
    job = printer.job()
    assert REPRINT_MARK.encode("shift_jis") in job and escpos.drawer_kick() not in job, "a reprint opens no drawer"


def test_printer_switched_off_or_missing_port_is_one_line_and_nothing_raises(tmp_path: Path) -> None:
    silent = FakePrinter(paper=None)
    try:
        config = tmp_path / "S001.toml"
        config.write_text(f'[store]\nid = "S001"\nname = "x"\ndatabase = "{tmp_path / "s.db"}"\n'
                          f'[broker]\nurl = "mqtt://127.0.0.1:1"\n[printer]\nport = "{silent.port}"\n'
                          "timeout_s = 0.2\n")  # fmt: skip
        outcome = print_receipt(load_config(str(config)), "緑茶\n", cash=True)
        assert not outcome.printed and "no status reply" in (outcome.error or "")
        config.write_text(config.read_text().replace(silent.port, str(tmp_path / "ttyUSB9")))
        outcome = print_receipt(load_config(str(config)), "緑茶\n")
        assert not outcome.printed and "No such file or directory" in (outcome.error or "")
        assert "reprint S001-00000007" in (outcome.advice("S001-00000007") or "")
    finally:
        silent.close()


def test_without_a_printer_section_the_text_receipt_is_all(store, capsys, monkeypatch) -> None:  # noqa: F811
    path, config, _db = store
    add_store_clerks(config.database)
    pins_on_stdin(monkeypatch)
    assert print_receipt(config, "x\n").configured is False
    assert main(["edge", "checkout", "--config", str(path), "--scan", ONIGIRI, "--pay", "cash:200", *AS_CLERK]) == 0
    assert main(["edge", "receipt", "reprint", "S001-00000001", "--config", str(path), *AS_CLERK]) == 0
    out = capsys.readouterr().out
    assert out.count("おにぎり 鮭") == 2 and out.count(REPRINT_MARK) == 1


class ReceiptHost(App[None]):
    """Just enough of the clerk terminal for its receipt screen: ``data.config`` is the store's config."""

    def __init__(self, config: StoreConfig) -> None:
        super().__init__()
        self.data = SimpleNamespace(config=config)
        self.notices: list[str] = []

    def notify(self, message: str, **options: Any) -> None:  # type: ignore[override]
        self.notices.append(message)
        super().notify(message, **options)


async def test_the_clerk_receipt_screen_prints_tells_of_paper_out_and_prints_again_on_f8(
    store, printer: FakePrinter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    path, config, db = store
    add_store_clerks(config.database)
    pins_on_stdin(monkeypatch)
    with_printer(path, printer.port)
    assert main(["edge", "checkout", "--config", str(path), "--scan", ONIGIRI, "--pay", "cash:200", *AS_CLERK]) == 0
    stored = load_sale(db, "S001", "S001-00000001")
    assert stored is not None
    wait_until(lambda: printer.job().endswith(escpos.drawer_kick()), 10, what="the sale's own receipt")
    printer.received.clear()
    printer.paper = PAPER_OUT
    app = ReceiptHost(load_config(str(path)))
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(ReceiptScreen(stored.sale, stored.receipt, tmp_path))
        await until(pilot, lambda: any("paper out" in m and "F8" in m for m in app.notices), what="the clerk told")
        assert bytes(printer.received) == QUERIES, "nothing printed on an empty roll"
        printer.paper = READY
        printer.received.clear()
        await pilot.press("f8")
        await pilot.app.workers.wait_for_complete()
    wait_until(lambda: ends_with_cut(printer.job()), 10, what="the reprint")
    assert REPRINT_MARK.encode("shift_jis") in printer.job() and escpos.drawer_kick() not in printer.job()
