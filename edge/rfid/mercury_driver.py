"""The Mercury (ThingMagic/Jadak M6E Nano) reader as a driver: set up once, then it streams.

Configuration follows SparkFun's ``begin``/``startReading`` sequence (docs/rfid.md, "Mercury"):
version, region, Gen2, read power, read filter off, continuous reading. The simulated module
answers as the logged M6E Nano does, refusals included, and sends a keep-alive about once a second.
"""

from __future__ import annotations

from typing import Final

from tenpo.edge.rfid import mercury
from tenpo.edge.rfid.driver import Exchange, HostCommand, ReaderDriver, SimulatedModule
from tenpo.edge.rfid.profile import ReaderProfile

# Payload of the logged M6E Nano VERSION reply (docs/rfid.md, "Mercury frames").
_VERSION: Final = bytes.fromhex("14120800 30000002 20150310 01030147 00000010")
_MAX_POWER_CDBM: Final = 2700
_KEEPALIVE_S: Final = 1.0
_FREQUENCY_KHZ: Final = 920_400  # a Japanese channel, reported with every simulated read


class MercuryDriver(ReaderDriver):
    name = "mercury"
    regions = frozenset(mercury.REGIONS)

    def decoder(self, profile: ReaderProfile) -> mercury.Decoder:
        return mercury.Decoder()

    def configuration(self, profile: ReaderProfile) -> list[Exchange]:
        steps = [
            Exchange(mercury.cmd_stop_continuous_read(), awaits_reply=False),  # in case it still streams
            Exchange(mercury.cmd_get_version()),
        ]
        if profile.region:
            steps.append(Exchange(mercury.cmd_set_region(profile.region)))
        steps.append(Exchange(mercury.cmd_set_tag_protocol()))
        if profile.tx_power_dbm:
            # The M6E Nano has one port; with several listed the strongest setting is used.
            steps.append(Exchange(mercury.cmd_set_read_power(max(profile.tx_power_dbm.values()))))
        steps.append(Exchange(mercury.cmd_set_read_filter(False)))
        steps.append(Exchange(mercury.cmd_start_continuous_read()))
        return steps

    def answers(self, command: bytes, event: object) -> bool:
        return isinstance(event, (mercury.Response, mercury.ReaderError)) and event.opcode == command[2]

    def refusal(self, command: bytes, reply: object) -> str | None:
        if isinstance(reply, mercury.ReaderError):
            return f"command 0x{reply.opcode:02X} refused: {reply.name}"
        return None

    def stop_command(self) -> bytes:
        return mercury.cmd_stop_continuous_read()

    def simulated_module(self, tag_count: int, rate: float) -> SimulatedMercury:
        return SimulatedMercury()


class SimulatedMercury(SimulatedModule):
    def __init__(self) -> None:
        self._commands = mercury.CommandDecoder()
        self._streaming = False
        self._last_keepalive = 0.0

    def on_host_bytes(self, data: bytes, now: float) -> list[HostCommand]:
        return [HostCommand(c.opcode, c.data, self._reply(c, now)) for c in self._commands.feed(data)]

    def _reply(self, command: mercury.Command, now: float) -> bytes:
        op, data = command.opcode, command.data
        if op == mercury.OP_VERSION:
            return mercury.build_response(op, _VERSION)
        if op == mercury.OP_SET_REGION:
            ok = len(data) == 1 and data[0] in mercury.REGIONS.values()
            return mercury.build_response(op, status=0 if ok else 0x010B)
        if op == mercury.OP_SET_READ_TX_POWER:
            power = int.from_bytes(data[:2], "big", signed=True) if len(data) >= 2 else -1
            status = 0x0103 if power > _MAX_POWER_CDBM else 0x0106 if power < 0 else 0
            return mercury.build_response(op, status=status)
        if op in (mercury.OP_SET_TAG_PROTOCOL, mercury.OP_SET_READER_OPT_PARAMS,
                  mercury.OP_SET_ANTENNA_PORT, mercury.OP_SET_BAUD_RATE):
            return mercury.build_response(op)
        if op == mercury.OP_MULTI_PROTOCOL_TAG_OP and data[:3] == b"\x00\x00\x02":
            self._streaming = False
            return mercury.build_response(op, b"\x02")
        if op == mercury.OP_MULTI_PROTOCOL_TAG_OP and data[:3] == b"\x00\x00\x01":
            self._streaming = True
            self._last_keepalive = now
            return mercury.build_response(op, b"\x01\x22\x00\x00")
        return mercury.build_response(op, status=0x0101)

    def reads_wanted(self) -> int | None:
        return None if self._streaming else 0

    def tag_report(self, epc: str, antenna: int, rssi: int, now: float) -> bytes:
        reader_ms = int((now - self._last_keepalive) * 1000)  # the module counts from its keep-alive
        return mercury.build_tag_notification(bytes.fromhex(epc), rssi, antenna, _FREQUENCY_KHZ, reader_ms)

    def after_reads(self, now: float) -> bytes:
        if not self._streaming or now - self._last_keepalive < _KEEPALIVE_S:
            return b""
        self._last_keepalive = now
        return mercury.build_response(mercury.OP_READ_TAG_ID_MULTIPLE, status=mercury.STATUS_NO_TAGS_FOUND)
