"""Two aggregators against one PostgreSQL share the channel requests (one shared subscription group): every
request is answered once, and of several channels racing for the last unit exactly one is confirmed, whichever
aggregator took which request."""

from __future__ import annotations

import threading
from pathlib import Path

from tenpo.channel import Client
from tenpo.sandbox import Mosquitto, aggregator_process, wait_until
from tenpo.shared.channel_api import ReservationAnswer
from tests.test_channel_support import make_chain


def test_two_aggregators_answer_each_request_once_and_confirm_the_last_unit_once(
    tmp_path: Path, broker: Mosquitto, postgres_url: str
) -> None:  # fmt: skip
    chain = make_chain(tmp_path, broker, postgres_url, stores=("S001",))
    aggregators = [aggregator_process(postgres_url, broker.url, tmp_path / f"agg{i}.log", client_id=f"agg-{i}").start()
                   for i in (1, 2)]  # fmt: skip
    chain.start_store("S001")
    try:
        wait_until(lambda: chain.db("S001").conn.execute("SELECT count(*) FROM products").fetchone()[0] == 2, 30,
                   what="products at S001")  # fmt: skip
        chain.receive("S001", "UMBRELLA", 1)
        answers: dict[str, ReservationAnswer] = {}
        start = threading.Barrier(4)

        def ask(channel: str) -> None:
            with Client(broker.url, channel, timeout=30) as client:
                start.wait()
                answers[channel] = client.reserve("UMBRELLA", "S001", 1, key=f"{channel}-last", wait_s=10)

        threads = [threading.Thread(target=ask, args=(c,)) for c in ("web", "app", "line", "kiosk")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(a.state for a in answers.values()) == ["confirmed", "rejected", "rejected", "rejected"], answers
        # Many queries, each answered exactly once although two aggregators listen.
        with Client(broker.url, "web", timeout=30) as web:
            for _ in range(40):
                assert web.stock("UMBRELLA", "S001").stores[0].reserved == 1
        for aggregator in aggregators:
            aggregator.terminate()
        counted = chain.central.scalar("SELECT sum(n) FROM channel_stats WHERE outcome = 'ok'")
        assert int(counted) == 44, "every request answered once, by one of the two"
    finally:
        for process in (*aggregators, *chain.agents.values()):
            if process.alive():
                process.terminate()
        chain.central.close()
