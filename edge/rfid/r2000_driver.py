"""R2000-module readers (0xA0 frames; YR902/YR903/IND903) as a driver: they read in rounds.

The module reads one inventory round per command and ends it with a summary; the host asks for the
next round at each summary (team0se7en/yr902 does the same), and again when none came for
``round_timeout_s``. With more than one antenna in the profile the rounds use fast-switch inventory
(0x8A) over them, otherwise real-time inventory (0x89) on the work antenna.
"""

from __future__ import annotations

from typing import Final

from tenpo.edge.rfid import r2000
from tenpo.edge.rfid.driver import Exchange, HostCommand, ReaderDriver, SimulatedModule
from tenpo.edge.rfid.profile import ReaderProfile

_MAX_POWER_DBM: Final = 33
_ROUND_SHARE: Final = 0.2  # a simulated round reports this many seconds' worth of reads
_FREQUENCY_INDEX: Final = 7  # 902.0 MHz in the module's table
_FAST_SWITCH_ROUND_MS: Final = 200


class R2000Driver(ReaderDriver):
    name = "r2000"
    regions = frozenset(r2000.REGIONS)
    round_timeout_s = 2.0

    def decoder(self, profile: ReaderProfile) -> r2000.Decoder:
        return r2000.Decoder()

    def configuration(self, profile: ReaderProfile) -> list[Exchange]:
        address = profile.address
        steps = [Exchange(r2000.cmd_get_firmware_version(address))]
        if profile.region:
            steps.append(Exchange(r2000.cmd_set_frequency_region(profile.region, address)))
        if profile.tx_power_dbm:
            powers = [round(profile.tx_power_dbm.get(port, 0)) for port in range(1, 5)]
            steps.append(Exchange(r2000.cmd_set_output_power(powers, address)))
        if len(profile.antennas) == 1:
            steps.append(Exchange(r2000.cmd_set_work_antenna(profile.antennas[0], address)))
        steps.append(Exchange(self.next_round(profile), awaits_reply=False))
        return steps

    def answers(self, command: bytes, event: object) -> bool:
        return isinstance(event, (r2000.CommandResult, r2000.Response)) and event.cmd == command[3]

    def refusal(self, command: bytes, reply: object) -> str | None:
        if isinstance(reply, r2000.CommandResult) and not reply.ok:
            return f"command 0x{reply.cmd:02X} refused: {reply.name}"
        return None

    def is_round_end(self, event: object) -> bool:
        return isinstance(event, r2000.RoundEnd)

    def next_round(self, profile: ReaderProfile) -> bytes:
        if len(profile.antennas) > 1:
            return r2000.cmd_fast_switch_inventory([(a, 1) for a in profile.antennas], 0, 1, profile.address)
        return r2000.cmd_real_time_inventory(1, profile.address)

    def simulated_module(self, tag_count: int, rate: float) -> SimulatedR2000:
        return SimulatedR2000(tag_count, rate)


class SimulatedR2000(SimulatedModule):
    """Each inventory command starts a round: a share of the tags, paced by the rate, then the summary."""

    def __init__(self, tag_count: int, rate: float) -> None:
        self._commands = r2000.CommandDecoder()
        self._round_size = max(1, min(tag_count, int(rate * _ROUND_SHARE)))
        self._rate = int(rate)
        self._round_cmd = r2000.CMD_REAL_TIME_INVENTORY
        self._round_left = 0  # tag records still due in the current round
        self._round_total = 0

    def on_host_bytes(self, data: bytes, now: float) -> list[HostCommand]:
        return [HostCommand(c.cmd, c.data, self._reply(c)) for c in self._commands.feed(data)]

    def _reply(self, command: r2000.Command) -> bytes:
        cmd, data, address = command.cmd, command.data, command.address

        def result(code: int) -> bytes:
            return r2000.build_frame(cmd, bytes((code,)), address)

        if cmd == r2000.CMD_GET_FIRMWARE_VERSION:
            return r2000.build_frame(cmd, b"\x01\x00", address)
        if cmd == r2000.CMD_SET_OUTPUT_POWER:
            ok = data and max(data) <= _MAX_POWER_DBM
            return result(r2000.SUCCESS if ok else 0x48)
        if cmd == r2000.CMD_SET_WORK_ANTENNA:
            return result(r2000.SUCCESS if data and data[0] < 4 else 0x41)
        if cmd in (r2000.CMD_SET_FREQUENCY_REGION, r2000.CMD_RESET_INVENTORY_BUFFER):
            return result(r2000.SUCCESS)
        if cmd in (r2000.CMD_REAL_TIME_INVENTORY, r2000.CMD_FAST_SWITCH_INVENTORY):
            self._round_cmd = cmd
            self._round_left = self._round_size
            self._round_total = 0
            return b""  # the round's tag records and summary are the answer
        return result(0x11)

    def reads_wanted(self) -> int:
        return self._round_left

    def tag_report(self, epc: str, antenna: int, rssi: int, now: float) -> bytes:
        self._round_left -= 1
        self._round_total += 1
        return r2000.build_tag_record(bytes.fromhex(epc), antenna, rssi, _FREQUENCY_INDEX, self._round_cmd)

    def after_reads(self, now: float) -> bytes:
        if self._round_left or not self._round_total:
            return b""
        total, self._round_total = self._round_total, 0
        if self._round_cmd == r2000.CMD_FAST_SWITCH_INVENTORY:
            data = total.to_bytes(3, "big") + _FAST_SWITCH_ROUND_MS.to_bytes(4, "big")
            return r2000.build_frame(r2000.CMD_FAST_SWITCH_INVENTORY, data)
        return r2000.build_round_end(total, 1, self._rate)
