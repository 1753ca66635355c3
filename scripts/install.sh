#!/usr/bin/env bash
# Install Tenpo on a store box (edge) or an HQ server (hq), Debian 12 / Raspberry Pi OS, 64- or 32-bit.
# Idempotent: run it again after `git pull` to upgrade. Uninstall keeps /etc/tenpo and /var/lib/tenpo.
#
# Usage: sudo scripts/install.sh [--root DIR] [--no-venv] edge|hq|uninstall
#
#   edge       the tenpo user, /etc/tenpo and /var/lib/tenpo, /opt/tenpo/.venv with `.`, the agent and
#              clerk-kiosk units (the agent enabled: it starts once /etc/tenpo/store.toml exists),
#              the udev rule that names serial RFID readers /dev/tenpo-rfidN, example config
#   hq         the same user and folders, /opt/tenpo/.venv with `.[hq]`, the aggregator and monitor units
#              (tenpo-cloud@1 enabled: it starts once /etc/tenpo/cloud.env exists), Mosquitto's config
#   uninstall  stop and remove the units, rules, virtualenv and config snippets; data and config stay
#
#   --root DIR   install into DIR instead of / (tests, image builds). The user and group are created by
#                systemd-sysusers --root DIR (DIR/etc/passwd, never the host's), folders and owners by
#                systemd-tmpfiles --root DIR; nothing outside DIR changes: apt, udevadm and the running
#                systemd are skipped (each skip is printed), pip installs into DIR/opt/tenpo/.venv.
#                Needs root like a real install (it chowns to the tenpo user of DIR/etc/passwd).
#   --no-venv    skip the virtualenv (the slow part); with --root for tests, or to keep an existing one
set -euo pipefail
# Whatever root's umask is, the virtualenv and units must be readable by the tenpo user and systemd.
umask 022
cd "$(dirname "$0")/.."
src=$PWD

usage() { echo "usage: scripts/install.sh [--root DIR] [--no-venv] edge|hq|uninstall" >&2; exit 2; }
die() { echo "install: $*" >&2; exit 1; }
say() { echo "install: $*"; }

root="" venv=1 role=""
while [ $# -gt 0 ]; do
  case $1 in
    --root) [ $# -ge 2 ] || usage; root=$(realpath -m "$2"); shift 2 ;;
    --root=*) root=$(realpath -m "${1#--root=}"); shift ;;
    --no-venv) venv=0; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    edge|hq|uninstall) [ -z "$role" ] || usage; role=$1; shift ;;
    *) usage ;;
  esac
done
[ -n "$role" ] || usage
[ "$(id -u)" -eq 0 ] || die "run as root (sudo scripts/install.sh $role): it creates a system user and chowns its folders"
[ "$root" != "/" ] || root=""
live=1; [ -z "$root" ] || live=0   # live: this machine's own /, with its systemd, udev and apt

R=$root
opt=/opt/tenpo
units_dir=/etc/systemd/system
edge_units=(tenpo-edge.service tenpo-clerk@.service)
hq_units=(tenpo-cloud@.service tenpo-hq-serve.service)

skipped() { say "skipped (--root): $*"; }

# put SRC DEST MODE: copy a file we own (overwritten on every run, so an upgrade brings the new one).
put() {
  install -D -m "$3" -o root -g root "$src/$1" "$R$2"
}

# example SRC DEST: copy an example next to the admin's config, never over an edited file.
example() {
  if [ ! -e "$R$2" ]; then
    install -D -m 0640 -o root -g "$tenpo_gid" "$src/$1" "$R$2"
  fi
}

systemctl_root() {
  if [ "$live" -eq 1 ]; then systemctl "$@"; else systemctl --root="$R" "$@"; fi
}

apt_install() {
  local missing=() pkg
  for pkg in "$@"; do dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg"); done
  [ ${#missing[@]} -gt 0 ] || return 0
  if [ "$live" -eq 0 ]; then skipped "apt-get install ${missing[*]}"; return 0; fi
  say "installing ${missing[*]} with apt"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

uninstall() {
  local unit
  for unit in tenpo-edge.service tenpo-cloud@1.service tenpo-hq-serve.service; do
    [ "$live" -eq 1 ] && systemctl stop "$unit" 2>/dev/null || true
  done
  for unit in "${edge_units[@]}" "${hq_units[@]}"; do
    if [ -e "$R$units_dir/$unit" ]; then
      systemctl_root disable "$unit" >/dev/null 2>&1 || true
      rm -f "$R$units_dir/$unit"
    fi
  done
  [ -e "$R$units_dir/tenpo-cloud@.service" ] || rm -f "$R$units_dir"/multi-user.target.wants/tenpo-cloud@*.service
  rm -f "$R$units_dir"/getty.target.wants/tenpo-clerk@*.service
  rm -f "$R/etc/udev/rules.d/60-tenpo-rfid.rules" "$R/etc/mosquitto/conf.d/tenpo.conf" "$R/usr/local/bin/tenpo"
  rm -rf "$R$opt"
  # The sysusers and tmpfiles snippets go; the user, /etc/tenpo and /var/lib/tenpo stay (data is kept).
  rm -f "$R/etc/sysusers.d/tenpo.conf" "$R/etc/tmpfiles.d/tenpo.conf"
  if [ "$live" -eq 1 ]; then
    systemctl daemon-reload
    udevadm control --reload 2>/dev/null || true
  fi
  say "uninstalled; kept the tenpo user, /etc/tenpo and /var/lib/tenpo (remove them by hand to erase the data)"
}

if [ "$role" = uninstall ]; then
  uninstall
  exit 0
fi

# --------------------------------------------------------------------------- system packages
apt_install python3 python3-venv
case $(uname -m) in
  # 32-bit ARM: Raspberry Pi OS takes wheels from piwheels (its /etc/pip.conf); elsewhere pip may have
  # to build cryptography or msgspec, which needs a compiler and headers.
  armv6l|armv7l) apt_install python3-dev build-essential libffi-dev libssl-dev ;;
esac
[ "$role" = edge ] && apt_install bluez
[ "$role" = hq ] && apt_install mosquitto

# --------------------------------------------------------------------------- user and folders
put packaging/sysusers.d/tenpo.conf /etc/sysusers.d/tenpo.conf 0644
put packaging/tmpfiles.d/tenpo.conf /etc/tmpfiles.d/tenpo.conf 0644
if [ "$live" -eq 1 ]; then
  systemd-sysusers /etc/sysusers.d/tenpo.conf
  systemd-tmpfiles --create /etc/tmpfiles.d/tenpo.conf
else
  systemd-sysusers --root="$R" "$R/etc/sysusers.d/tenpo.conf"
  systemd-tmpfiles --root="$R" --create "$R/etc/tmpfiles.d/tenpo.conf"
fi
tenpo_gid=$(awk -F: '$1 == "tenpo" { print $3 }' "$R/etc/group")
[ -n "$tenpo_gid" ] || die "systemd-sysusers did not create the tenpo group in $R/etc/group"

# --------------------------------------------------------------------------- virtualenv
# A plain (not editable) install of this checkout, at the versions in constraints.txt; redone when the
# source, pyproject.toml or constraints.txt changed (their hash in the stamp file).
extras=""; [ "$role" = hq ] && extras="[hq]"
if [ "$venv" -eq 1 ]; then
  [ "$live" -eq 1 ] || say "--root: the virtualenv's scripts name $R$opt/.venv/bin/python; use it in a chroot or image at $R"
  stamp="$R$opt/.venv/.tenpo-installed"
  # Hash of the files themselves, not of git's idea of them (a checkout owned by another user, a tarball).
  inputs=$( (find edge cloud shared tenpo -type f \( -name '*.py' -o -name '*.tcss' -o -name 'py.typed' \) -print0 |
             sort -z | xargs -0 sha256sum; cat pyproject.toml constraints.txt) | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null || true)" != "$inputs $role" ]; then
    say "installing tenpo$extras into $opt/.venv (versions from constraints.txt)"
    install -d -m 0755 "$R$opt"
    [ -x "$R$opt/.venv/bin/python" ] || python3 -m venv "$R$opt/.venv"
    "$R$opt/.venv/bin/python" -m pip install -q --upgrade pip
    "$R$opt/.venv/bin/python" -m pip install -q -c constraints.txt "$src$extras"
    echo "$inputs $role" > "$stamp"
  fi
  install -d -m 0755 "$R/usr/local/bin"
  ln -sfn "$opt/.venv/bin/tenpo" "$R/usr/local/bin/tenpo"
else
  say "--no-venv: $opt/.venv left as it is"
fi
put docs/operations.md "$opt/docs/operations.md" 0644

# --------------------------------------------------------------------------- units, rules, config
if [ "$role" = edge ]; then units=("${edge_units[@]}"); else units=("${hq_units[@]}"); fi
for unit in "${units[@]}"; do put "systemd/$unit" "$units_dir/$unit" 0644; done

if [ "$role" = edge ]; then
  put packaging/udev/60-tenpo-rfid.rules /etc/udev/rules.d/60-tenpo-rfid.rules 0644
  example firmware-config/store.example.toml /etc/tenpo/store.example.toml
  for profile in firmware-config/readers/*.toml; do example "$profile" "/etc/tenpo/readers/$(basename "$profile")"; done
  example firmware-config/beacons.toml /etc/tenpo/beacons.example.toml
  enable=(tenpo-edge.service)
else
  put firmware-config/broker/mosquitto.conf /etc/mosquitto/conf.d/tenpo.conf 0644
  put firmware-config/broker/acl /etc/mosquitto/tenpo/acl 0644
  example packaging/cloud.env.example /etc/tenpo/cloud.env.example
  enable=(tenpo-cloud@1.service)
  if [ -e "$R/etc/mosquitto/mosquitto.conf" ] && ! grep -q '^include_dir /etc/mosquitto/conf.d' "$R/etc/mosquitto/mosquitto.conf"; then
    say "warning: /etc/mosquitto/mosquitto.conf has no 'include_dir /etc/mosquitto/conf.d'; Tenpo's broker settings are not read"
  fi
fi

if [ "$live" -eq 1 ]; then
  systemctl daemon-reload
  [ "$role" = edge ] && { udevadm control --reload; udevadm trigger --subsystem-match=tty --action=add; }
  [ "$role" = hq ] && systemctl try-restart mosquitto.service
else
  skipped "systemctl daemon-reload, udevadm control --reload, restarting running services"
fi
systemctl_root enable "${enable[@]}" >/dev/null 2>&1 || die "systemctl enable ${enable[*]} failed"
if [ "$live" -eq 1 ]; then
  # An upgrade: restart what runs (the condition keeps a box without config stopped).
  systemctl try-restart "${enable[@]}" tenpo-hq-serve.service 'tenpo-cloud@*.service' 'tenpo-clerk@*.service' 2>/dev/null || true
fi
say "$role installed; next steps: docs/operations.md"
