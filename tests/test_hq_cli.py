"""`tenpo hq` on the command line: help, the serve command, a bad config."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import pytest

from tenpo.cli import main
from tenpo.cloud.hq.cli import make_app, public_url, serve_command


def test_help_names_the_keys_and_serve(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["hq", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "--serve" in text and "--config" in text and "dead letters" in text


def test_serve_runs_this_same_monitor_for_each_browser(tmp_path: Path) -> None:
    args = argparse.Namespace(db="sqlite:///a b/central.db", broker="mqtt://hq:1883", config=tmp_path / "m.toml",
                              tls_ca=None, tls_cert=None, tls_key=None, screenshots=None)  # fmt: skip
    words = shlex.split(serve_command(args))
    assert words[1:5] == ["-P", "-m", "tenpo", "hq"] and "--serve" not in words
    assert words[words.index("--db") + 1] == "sqlite:///a b/central.db"
    assert words[words.index("--config") + 1] == str(tmp_path / "m.toml")


def test_a_bad_monitor_config_is_one_line_and_exit_1(tmp_path: Path, capsys) -> None:
    config = tmp_path / "monitor.toml"
    config.write_text("[thresholds]\nbacklog_above = -1\n")
    assert main(["hq", "--db", f"sqlite:///{tmp_path / 'c.db'}", "--broker", "none", "--config", str(config)]) == 1
    assert "backlog_above: must be a number >= 0" in capsys.readouterr().err


def test_make_app_without_a_broker_has_no_listener(tmp_path: Path) -> None:
    app = make_app(f"sqlite:///{tmp_path / 'c.db'}", "none")
    assert app.listener is None
    app.data.close()


@pytest.mark.parametrize(
    ("host", "port", "explicit", "expected"),
    [("localhost", 8000, None, "http://localhost:8000"), ("0.0.0.0", 8000, None, "http://hq-01.example.jp:8000"),
     ("::", 80, None, "http://hq-01.example.jp"), ("0.0.0.0", 8000, "https://hq.example.jp/monitor/", "https://hq.example.jp/monitor"),
     ("::1", 8000, None, "http://[::1]:8000")],  # fmt: skip
)
def test_the_page_is_never_told_to_load_from_a_wildcard_address(host: str, port: int, explicit: str | None,
                                                                 expected: str) -> None:  # fmt: skip
    assert public_url(host, port, explicit, machine=lambda: "hq-01.example.jp") == expected


def test_a_public_url_that_is_no_web_address_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["hq", "--serve", "--public-url", "hq.example.jp:8000"])
    assert exited.value.code == 2 and "must be an http:// or https:// address" in capsys.readouterr().err
