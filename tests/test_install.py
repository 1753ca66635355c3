"""scripts/install.sh into a throwaway root (--root, --no-venv): every file with its owner and mode, the
tenpo user, idempotence, an admin's config left alone, uninstall keeping the data, and the installed
units passing `systemd-analyze verify` inside that root."""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import socket
import ssl
import stat
import subprocess
from pathlib import Path

import pytest

from tenpo.cli import main
from tenpo.sandbox import free_port, wait_for_port

REPO = Path(__file__).resolve().parent.parent
# MQTT 3.1.1 CONNECT (clean session, keep-alive 60 s, client id "S001") and the CONNACK accepting it.
MQTT_CONNECT = bytes([0x10, 16, 0, 4]) + b"MQTT" + bytes([4, 0x02, 0, 60, 0, 4]) + b"S001"
CONNACK_ACCEPTED = bytes([0x20, 2, 0, 0])
INSTALL = REPO / "scripts" / "install.sh"
# Files systemd-sysusers writes in the root; checked through the user and group they describe.
ACCOUNT_FILES = {"etc/passwd", "etc/group", "etc/shadow", "etc/gshadow", "etc/.pwd.lock"}

COMMON = {
    "etc": ("d", 0o755, "root", "root"),
    "etc/sysusers.d": ("d", 0o755, "root", "root"),
    "etc/sysusers.d/tenpo.conf": ("f", 0o644, "root", "root"),
    "etc/tmpfiles.d": ("d", 0o755, "root", "root"),
    "etc/tmpfiles.d/tenpo.conf": ("f", 0o644, "root", "root"),
    "etc/systemd": ("d", 0o755, "root", "root"),
    "etc/systemd/system": ("d", 0o755, "root", "root"),
    "etc/systemd/system/multi-user.target.wants": ("d", 0o755, "root", "root"),
    "etc/tenpo": ("d", 0o750, "root", "tenpo"),
    "etc/tenpo/readers": ("d", 0o750, "root", "tenpo"),
    "var": ("d", 0o755, "root", "root"),
    "var/lib": ("d", 0o755, "root", "root"),
    "var/lib/tenpo": ("d", 0o700, "tenpo", "tenpo"),
    "var/lib/tenpo/backups": ("d", 0o700, "tenpo", "tenpo"),
    "opt": ("d", 0o755, "root", "root"),
    "opt/tenpo": ("d", 0o755, "root", "root"),
    "opt/tenpo/docs": ("d", 0o755, "root", "root"),
    "opt/tenpo/docs/operations.md": ("f", 0o644, "root", "root"),
}
EDGE = {
    **COMMON,
    "etc/systemd/system/tenpo-edge.service": ("f", 0o644, "root", "root"),
    "etc/systemd/system/tenpo-clerk@.service": ("f", 0o644, "root", "root"),
    "etc/systemd/system/multi-user.target.wants/tenpo-edge.service": ("l", 0o777, "root", "root"),
    "etc/udev": ("d", 0o755, "root", "root"),
    "etc/udev/rules.d": ("d", 0o755, "root", "root"),
    "etc/udev/rules.d/60-tenpo-rfid.rules": ("f", 0o644, "root", "root"),
    "etc/tenpo/store.example.toml": ("f", 0o640, "root", "tenpo"),
    "etc/tenpo/beacons.example.toml": ("f", 0o640, "root", "tenpo"),
    **{f"etc/tenpo/readers/{p.name}": ("f", 0o640, "root", "tenpo") for p in (REPO / "firmware-config/readers").glob("*.toml")},
}  # fmt: skip
HQ = {
    **COMMON,
    "etc/systemd/system/tenpo-cloud@.service": ("f", 0o644, "root", "root"),
    "etc/systemd/system/tenpo-hq-serve.service": ("f", 0o644, "root", "root"),
    "etc/systemd/system/multi-user.target.wants/tenpo-cloud@1.service": ("l", 0o777, "root", "root"),
    "etc/mosquitto": ("d", 0o755, "root", "root"),
    "etc/mosquitto/conf.d": ("d", 0o755, "root", "root"),
    "etc/mosquitto/conf.d/tenpo.conf": ("f", 0o644, "root", "root"),
    "etc/mosquitto/tenpo": ("d", 0o755, "root", "root"),
    "etc/mosquitto/tenpo/acl": ("f", 0o644, "root", "root"),
    "etc/tenpo/cloud.env.example": ("f", 0o640, "root", "tenpo"),
}
# Where a file we ship comes from, to check the installed copy is that file.
SOURCES = {
    "etc/sysusers.d/tenpo.conf": "packaging/sysusers.d/tenpo.conf",
    "etc/tmpfiles.d/tenpo.conf": "packaging/tmpfiles.d/tenpo.conf",
    "etc/udev/rules.d/60-tenpo-rfid.rules": "packaging/udev/60-tenpo-rfid.rules",
    "etc/systemd/system/tenpo-edge.service": "systemd/tenpo-edge.service",
    "etc/systemd/system/tenpo-clerk@.service": "systemd/tenpo-clerk@.service",
    "etc/systemd/system/tenpo-cloud@.service": "systemd/tenpo-cloud@.service",
    "etc/systemd/system/tenpo-hq-serve.service": "systemd/tenpo-hq-serve.service",
    "etc/mosquitto/conf.d/tenpo.conf": "firmware-config/broker/mosquitto.conf",
    "etc/mosquitto/tenpo/acl": "firmware-config/broker/acl",
    "etc/tenpo/store.example.toml": "firmware-config/store.example.toml",
    "etc/tenpo/cloud.env.example": "packaging/cloud.env.example",
}


def install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(INSTALL), "--root", str(root), *args], capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def installed(root: Path, *args: str) -> str:
    result = install(root, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def accounts(root: Path, name: str) -> dict[str, list[str]]:
    """name -> fields of the root's passwd or group file."""
    lines = (root / "etc" / name).read_text().splitlines()
    return {fields[0]: fields for fields in (line.split(":") for line in lines)}


def tree(root: Path) -> dict[str, tuple[str, int, str, str]]:
    """Every path under root: (kind, permission bits, owner, group), names resolved in the root's files."""
    users = {int(f[2]): n for n, f in accounts(root, "passwd").items()} | {0: "root"}
    groups = {int(f[2]): n for n, f in accounts(root, "group").items()} | {0: "root"}
    found = {}
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if relative in ACCOUNT_FILES:
            continue
        info = path.lstat()
        kind = "l" if stat.S_ISLNK(info.st_mode) else "d" if stat.S_ISDIR(info.st_mode) else "f"
        found[relative] = (kind, stat.S_IMODE(info.st_mode), users[info.st_uid], groups[info.st_gid])
    return found


def digest(root: Path) -> dict[str, tuple[tuple[str, int, str, str], str]]:
    return {
        path: (entry, hashlib.sha256((root / path).read_bytes()).hexdigest() if entry[0] == "f" else "")
        for path, entry in tree(root).items()
    }


@pytest.mark.parametrize(("role", "expected"), [("edge", EDGE), ("hq", HQ)])
def test_install_creates_every_file_with_its_owner_and_mode(tmp_path: Path, role: str, expected: dict) -> None:
    root = tmp_path / "root"
    host_accounts = Path("/etc/passwd").read_bytes(), Path("/etc/group").read_bytes()
    output = installed(root, "--no-venv", role)
    assert tree(root) == expected
    for target, source in SOURCES.items():
        if target in expected:
            assert (root / target).read_bytes() == (REPO / source).read_bytes(), target
    wants = root / "etc/systemd/system/multi-user.target.wants"
    unit = "tenpo-edge.service" if role == "edge" else "tenpo-cloud@.service"
    assert os.readlink(next(wants.iterdir())) == f"/etc/systemd/system/{unit}"
    # Nothing outside the root was touched, and the output says what was left out.
    assert "skipped (--root)" in output and "systemctl daemon-reload" in output
    assert (Path("/etc/passwd").read_bytes(), Path("/etc/group").read_bytes()) == host_accounts


def test_the_tenpo_user_is_a_system_user_without_login_in_the_device_groups(tmp_path: Path) -> None:
    root = tmp_path / "root"
    installed(root, "--no-venv", "edge")
    user = accounts(root, "passwd")["tenpo"]
    assert int(user[2]) < 1000 and user[5] == "/var/lib/tenpo" and user[6].endswith("nologin")
    groups = accounts(root, "group")
    assert user[3] == groups["tenpo"][2]
    assert all("tenpo" in groups[group][3].split(",") for group in ("dialout", "bluetooth", "lp"))


def test_install_twice_changes_nothing_and_keeps_the_admins_files(tmp_path: Path) -> None:
    root = tmp_path / "root"
    installed(root, "--no-venv", "edge")
    store = root / "etc/tenpo/store.toml"
    store.write_text('[store]\nid = "S007"\n')
    profile = root / "etc/tenpo/readers/m6e-nano.toml"
    profile.write_text("# tuned for this dock\n")
    before = digest(root)
    passwd = (root / "etc/passwd").read_text()
    installed(root, "--no-venv", "edge")
    assert digest(root) == before
    assert (root / "etc/passwd").read_text() == passwd
    assert store.read_text() == '[store]\nid = "S007"\n' and profile.read_text() == "# tuned for this dock\n"


def test_uninstall_removes_the_software_and_keeps_data_config_and_user(tmp_path: Path) -> None:
    root = tmp_path / "root"
    installed(root, "--no-venv", "edge")
    installed(root, "--no-venv", "hq")
    (root / "var/lib/tenpo/S001.db").write_bytes(b"SQLite format 3\0")
    (root / "etc/tenpo/store.toml").write_text('[store]\nid = "S001"\n')
    installed(root, "uninstall")
    left = tree(root)
    assert not [path for path in left if path.startswith(("etc/systemd/system/", "etc/udev/rules.d/", "opt/tenpo/"))]
    assert not [path for path in left if path.endswith(("tenpo.conf", ".service", ".rules"))]
    assert (root / "var/lib/tenpo/S001.db").read_bytes() == b"SQLite format 3\0"
    assert left["var/lib/tenpo"] == ("d", 0o700, "tenpo", "tenpo")
    assert (root / "etc/tenpo/store.toml").exists() and "tenpo" in accounts(root, "passwd")
    installed(root, "--no-venv", "edge")  # and it comes back over the kept data
    assert (root / "var/lib/tenpo/S001.db").read_bytes() == b"SQLite format 3\0"


def test_installed_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    root = tmp_path / "root"
    installed(root, "--no-venv", "edge")
    installed(root, "--no-venv", "hq")
    # verify --root resolves the units' dependencies and ExecStart inside the root: give it systemd's own
    # units and, for --no-venv, an executable where the virtualenv's tenpo would be.
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    executable = root / "opt/tenpo/.venv/bin/tenpo"
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    units = sorted((root / "etc/systemd/system").glob("*.service"))
    assert len(units) == 4
    result = subprocess.run(["systemd-analyze", "verify", f"--root={root}", "--man=no", *map(str, units)],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0 and not result.stderr.strip(), result.stdout + result.stderr
    executable.unlink()  # the same check fails without the program, so it does look
    result = subprocess.run(["systemd-analyze", "verify", f"--root={root}", "--man=no", str(units[0])],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode != 0 and "not executable" in result.stderr


def test_bad_usage_is_exit_2_and_names_the_usage(tmp_path: Path) -> None:
    for args in ([], ["shop"], ["edge", "hq"], ["--root"]):
        result = subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and result.stderr.startswith("usage: scripts/install.sh"), args
    assert not (tmp_path / "root").exists()
    helped = subprocess.run(["bash", str(INSTALL), "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "--root DIR" in helped.stdout and "set -e" not in helped.stdout


def test_udev_rule_names_every_documented_chip_and_only_those() -> None:
    rules = (REPO / "packaging/udev/60-tenpo-rfid.rules").read_text()
    documented = set(re.findall(r"^#\s+([0-9a-f]{4}):([0-9a-f]{4})\s", rules, re.MULTILINE))
    matched = set(re.findall(r'ATTRS\{idVendor\}=="([0-9a-f]{4})", ATTRS\{idProduct\}=="([0-9a-f]{4})"', rules))
    assert documented == matched and ("0403", "6015") in matched and ("1a86", "7523") in matched
    assert 'SYMLINK+="tenpo-rfid%n"' in rules and 'ENV{ID_MM_DEVICE_IGNORE}="1"' in rules


def test_installed_broker_config_runs_mosquitto_with_client_certificates_required(tmp_path: Path) -> None:
    root = tmp_path / "root"
    installed(root, "--no-venv", "hq")
    tls = root / "etc/mosquitto/tenpo"
    for args in (["ca"], ["broker", "--host", "127.0.0.1"], ["store", "S001"]):
        assert main(["provision", *args, "--dir", str(tls)]) == 0
    # The shipped file as installed, pointed at the root and a free local port, run as this user.
    port = free_port()
    shipped = (root / "etc/mosquitto/conf.d/tenpo.conf").read_text()
    assert "listener 8883\n" in shipped and "require_certificate true" in shipped
    config = tmp_path / "mosquitto.conf"
    local = shipped.replace("/etc/mosquitto/tenpo/", f"{tls}/").replace("listener 8883", f"listener {port} 127.0.0.1")
    config.write_text(f"user {pwd.getpwuid(os.getuid()).pw_name}\n" + local)
    with (tmp_path / "mosquitto.log").open("wb") as log:
        broker = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(config)],
                                  stdout=log, stderr=log)  # fmt: skip
    try:
        wait_for_port(port)
        context = ssl.create_default_context(cafile=str(tls / "ca.pem"))
        context.load_cert_chain(str(tls / "S001.crt"), str(tls / "S001.client.key"))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as conn:  # fmt: skip
            conn.sendall(MQTT_CONNECT)
            assert conn.recv(4) == CONNACK_ACCEPTED
        anonymous = ssl.create_default_context(cafile=str(tls / "ca.pem"))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                anonymous.wrap_socket(raw, server_hostname="127.0.0.1") as conn:  # fmt: skip
            # TLS 1.3 reports the missing certificate after the handshake: the first read fails or ends.
            try:
                conn.sendall(MQTT_CONNECT)
                answer = conn.recv(4)
            except (ssl.SSLError, ConnectionResetError):
                answer = b""
            assert answer != CONNACK_ACCEPTED
    finally:
        broker.terminate()
        broker.wait(timeout=10)
