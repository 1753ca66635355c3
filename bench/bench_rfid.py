"""RFID benchmarks: decode throughput of each reader protocol next to what a 921,600-baud line can
carry, and the EPC decoder next to epcpy on the same EPCs (CPU time of this process, so the ratio holds on a
shared machine). Run: python -m bench.bench_rfid (< 30 s).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from tenpo.edge.rfid import ascii_lines, mercury, r2000
from tenpo.edge.rfid.driver import StreamDecoder
from tenpo.edge.rfid.profile import ReaderProfile
from tenpo.edge.rfid.reads import TagRead
from tenpo.edge.rfid.registry import driver_for
from tenpo.shared import epc as epc_codec

BAUD = 921_600
BYTES_PER_SECOND = BAUD / 10  # 8N1: start + 8 data + stop bits per byte
READS = 40_000
CHUNK = 4096  # a generous serial read; real reads are smaller, so this is the favourable case

Row = tuple[str, float, str, float, str]


def _sgtins(count: int, gtins: int, rng: random.Random) -> list[str]:
    """``count`` SGTIN-96 EPCs spread evenly over ``gtins`` GTINs (each GTIN once when equal)."""
    heads = [(rng.randrange(10**7), rng.randrange(10**6)) for _ in range(gtins)]
    picks = [heads[n % gtins] for n in range(count)]
    rng.shuffle(picks)
    out = []
    for company, item in picks:
        value = (0x30 << 88) | (1 << 85) | (5 << 82) | (company << 58) | (item << 38)
        out.append(f"{value | rng.randrange(1 << 38):024X}")
    return out


def _best_rate(run: Callable[[], int], repeat: int = 3, clock: Callable[[], float] = time.perf_counter) -> float:
    """Items per second of the fastest of a few runs (the others paid for noise, not code)."""
    best = 0.0
    for _ in range(repeat):
        started = clock()
        items = run()
        best = max(best, items / (clock() - started))
    return best


def _decode_rate(make_decoder: Callable[[], StreamDecoder], stream: bytes) -> float:
    def run() -> int:
        decoder = make_decoder()
        reads = 0
        for offset in range(0, len(stream), CHUNK):
            for event in decoder.feed(stream[offset : offset + CHUNK]):
                reads += isinstance(event, TagRead)
        return reads

    return _best_rate(run)


def protocol_rows(rng: random.Random) -> list[Row]:
    """Each protocol's decoder as the transport makes it (through the protocol's driver)."""
    epcs = [bytes.fromhex(h) for h in _sgtins(READS, 200, rng)]
    streams = {
        "mercury": [mercury.build_tag_notification(e, -55, 1, 920_400, i % 1000) for i, e in enumerate(epcs)],
        "r2000": [r2000.build_tag_record(e, 1 + i % 4, -60, 7) for i, e in enumerate(epcs)],
        "ascii": [ascii_lines.format_line(TagRead(e.hex().upper(), -60, 1, 0.0)) for e in epcs],
    }
    rows = []
    for name, frames in streams.items():
        profile = ReaderProfile(port="bench", protocol=name)
        frame_size = sum(map(len, frames)) / len(frames)
        line_rate = BYTES_PER_SECOND / frame_size
        rate = _decode_rate(lambda profile=profile: driver_for(profile.protocol).decoder(profile), b"".join(frames))
        rows.append((f"{name} decode", rate, "reads/s", line_rate,
                     f"line rate at {BAUD} baud ({frame_size:.0f}-byte frames)"))
    return rows


def epc_rows(rng: random.Random) -> list[Row]:
    from epcpy import hex_to_tag_encodable

    rows = []
    # A delivery: 5,000 items of 100 GTINs (many serials per GTIN, as on a real dock); then the
    # worst case, every EPC of a different GTIN, where nothing above the serial can be reused.
    for label, epcs in (("100 GTINs", _sgtins(5_000, 100, rng)), ("all distinct", _sgtins(5_000, 5_000, rng))):
        decode = epc_codec.decode_epc

        def ours(epcs: list[str] = epcs, decode: Callable[[str], epc_codec.DecodedEpc] = decode) -> int:
            return sum(1 for h in epcs if decode(h).pure_identity)

        def theirs(epcs: list[str] = epcs) -> int:
            return sum(1 for h in epcs if hex_to_tag_encodable(h).epc_uri)

        assert [decode(h).pure_identity for h in epcs[:200]] == [
            hex_to_tag_encodable(h).epc_uri for h in epcs[:200]
        ]
        # Both sides decode the same list in this process, best of the same number of runs, timed by the
        # process's CPU time: on a shared machine the wall clock also counts the time others had the CPU.
        cpu = time.process_time
        # IMPLEMENTATION: "compiled" with the mypyc build setup.sh makes (docs/rfid.md), else "python"
        rows.append((f"epc decode ({label}, {epc_codec.IMPLEMENTATION})", _best_rate(ours, 5, cpu), "EPCs/s",
                     _best_rate(theirs, 5, cpu), "epcpy on the same EPCs"))
    return rows


def run() -> list[Row]:
    """(label, our rate, unit, reference rate, what the reference is)."""
    rng = random.Random(4)
    return protocol_rows(rng) + epc_rows(rng)


def format_row(row: Row) -> str:
    label, rate, unit, reference, what = row
    target = (20 if "distinct" in label else 10) if label.startswith("epc") else 100  # issue 19: worst case 20x
    return (f"{label}: {rate:,.0f} {unit}  vs  {what}: {reference:,.0f} {unit}  "
            f"(ratio {rate / reference:,.0f}x, target >={target}x)")


def main() -> None:
    for row in run():
        print(format_row(row))


if __name__ == "__main__":
    main()
