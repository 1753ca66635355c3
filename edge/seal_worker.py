"""Issue 19 §5: a bootstrap's members are sealed in a second process, on the other core, while the agent
writes SQLite.

The agent starts ``python -m tenpo.edge.seal_worker`` once a snapshot's members arrive and gives it the data
key on its standard input (a pipe between the two processes: the key never touches the disk, as in the agent).
For each members chunk, as it arrives from the broker, the agent sends the members' personal fields; the
worker answers with what ``vault.sealed_rows`` and the name tokens give in the agent (the same codec under
the same key: fresh nonces from the system's random source, the same blind indexes and tokens). The agent
uses an answer for the members it inserts fresh, under that data key only; anything else (a worker that
stopped, a rotated key, a member already held) is sealed in the agent as before.

Frames both ways: a 4-byte big-endian length, then msgpack. Request ``[seq, member_ids, people]`` (each
person ``[name, kana, phone, email, card_no, line_user_id, personal or None]``); answer ``[seq, rows,
tokens]``, one sealed row (``vault.STORED_COLUMNS``) and one packed token pair (``bootstrap_bulk.packed``
without the id) per member.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import msgspec

from tenpo.edge.membership import vault
from tenpo.shared import pii

log = logging.getLogger(__name__)

Sealed = dict[str, tuple[tuple[bytes | None, ...], bytes, str]]  # member id -> (stored columns, tokens, ranks)
_HEADER = 4


@dataclass(frozen=True, slots=True)
class Pending:
    """A chunk's sealing asked for: under which data key, and how to wait for it."""

    key_id: str
    fetch: Callable[[], Sealed | None]


def _read_frame(stream: IO[bytes]) -> bytes | None:
    header = stream.read(_HEADER)
    if len(header) < _HEADER:
        return None
    size = int.from_bytes(header, "big")
    body = stream.read(size)
    return body if len(body) == size else None


def _write_frame(stream: IO[bytes], body: bytes) -> None:
    stream.write(len(body).to_bytes(_HEADER, "big") + body)
    stream.flush()


def person_fields(name: str | None, kana: str | None, phone: str | None, email: str | None, card_no: str | None,
                  line_user_id: str | None, personal: dict[str, Any] | None) -> list[Any]:  # fmt: skip
    return [name, kana, phone, email, card_no, line_user_id, personal or None]


def seal_people(codec: pii.Codec, member_ids: list[str], people: list[list[Any]]) -> tuple[list[Any], list[Any]]:
    """What the agent would store for these members: sealed rows and (tokens, ranks) pairs."""
    persons = [vault.Personal(*fields) for fields in people]
    rows = vault.sealed_rows(codec, member_ids, persons)
    tokens = []
    for person in persons:
        found = codec.name_tokens(person.name, person.kana)
        tokens.append((b"".join(found), "".join(map(chr, found.values()))))
    return rows, tokens


def main() -> int:
    """The worker: the data key, then requests until its input closes."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    codec = pii.Codec(stdin.read(pii.KEY_BYTES))
    encoder, decoder = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder()
    while (frame := _read_frame(stdin)) is not None:
        seq, member_ids, people = decoder.decode(frame)
        rows, tokens = seal_people(codec, member_ids, people)
        _write_frame(stdout, encoder.encode([seq, rows, tokens]))
    return 0


class SealWorker:
    """The agent's side: ``submit`` from the broker's thread as a chunk arrives, the answer taken by the loop
    when it applies the chunk (a reader thread keeps the worker's output drained meanwhile)."""

    def __init__(self, codec: pii.Codec) -> None:
        self.key_id = codec.key_id
        self._process = subprocess.Popen([sys.executable, "-P", "-m", "tenpo.edge.seal_worker"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
        assert self._process.stdin is not None and self._process.stdout is not None
        self._stdin, self._stdout = self._process.stdin, self._process.stdout
        self._stdin.write(codec.dek)
        self._stdin.flush()
        self._encoder, self._decoder = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder()
        self._sent = 0
        self._answers: dict[int, tuple[list[str], list[Any], list[Any]]] = {}
        self._asked: dict[int, list[str]] = {}
        self._ready = threading.Condition()
        self._stopped = False
        self._send_lock = threading.Lock()
        threading.Thread(target=self._read, name="seal-worker-reader", daemon=True).start()

    def submit(self, member_ids: list[str], people: list[list[Any]]) -> Pending:
        """Ask for a chunk's sealing; the returned function waits for the answer (None: seal in the agent)."""
        with self._send_lock:
            self._sent += 1
            seq = self._sent
            with self._ready:
                self._asked[seq] = member_ids
            try:
                _write_frame(self._stdin, self._encoder.encode([seq, member_ids, people]))
            except (OSError, ValueError):
                self._stop()
        return Pending(self.key_id, lambda: self._answer(seq))

    def _read(self) -> None:
        try:
            while (frame := _read_frame(self._stdout)) is not None:
                seq, rows, tokens = self._decoder.decode(frame)
                with self._ready:
                    self._answers[seq] = (self._asked.pop(seq, []), rows, tokens)
                    self._ready.notify_all()
        except (OSError, ValueError, msgspec.DecodeError):
            log.exception("the sealing worker's answer could not be read")
        self._stop()

    def _stop(self) -> None:
        with self._ready:
            self._stopped = True
            self._ready.notify_all()

    def _answer(self, seq: int) -> Sealed | None:
        with self._ready:
            self._ready.wait_for(lambda: seq in self._answers or self._stopped)
            answer = self._answers.pop(seq, None)
            for older in [s for s in self._answers if s < seq]:  # chunks that were never applied (stale copies)
                del self._answers[older]
        if answer is None:
            return None
        member_ids, rows, tokens = answer
        sealed: Sealed = {}
        for member_id, row, (packed, ranks) in zip(member_ids, rows, tokens, strict=True):
            sealed.setdefault(member_id, (tuple(row), packed, ranks))  # a member twice in a chunk: the first is fresh
        return sealed

    def close(self) -> None:
        try:
            self._stdin.close()
        except OSError:
            pass
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._stop()


if __name__ == "__main__":
    sys.exit(main())
