"""HQ commands: registering stores, importing the product list, status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tenpo.shared import crypto


def tenpo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenpo", *args], capture_output=True, text=True)


def test_store_add_product_import_and_status(tmp_path: Path, central_url: str) -> None:
    db = ["--db", central_url]
    crypto.generate_keypair(tmp_path / "S001.key", tmp_path / "S001.pub")
    added = tenpo("cloud", "store", "add", "S001", "--public-key", str(tmp_path / "S001.pub"), *db)
    assert added.returncode == 0 and "registered" in added.stdout

    (tmp_path / "junk.pub").write_text("not a key")
    bad = tenpo("cloud", "store", "add", "S002", "--public-key", str(tmp_path / "junk.pub"), *db)
    assert bad.returncode == 1 and bad.stderr.startswith("tenpo: public key:") and bad.stderr.count("\n") == 1

    products = tmp_path / "products.csv"
    products.write_bytes("\ufeffsku,jan,name,price,tax_class\nA1,4901234567894,緑茶,150,reduced\n"
                         "B2,,傘,abc,standard\nC3,,靴下,500,luxury\n,,名無し,1,standard\n".encode())  # fmt: skip
    first = json.loads(tenpo("cloud", "product", "import", str(products), "--json", *db).stdout)
    assert (first["created"], first["updated"]) == (1, 0)
    assert [r["reason"] for r in first["rejected"]] == [
        "line 3: price 'abc' is not a whole number of yen",
        "line 4: tax_class 'luxury' must be one of standard, reduced",
        "line 5: sku is empty",
    ]
    again = json.loads(tenpo("cloud", "product", "import", str(products), "--json", *db).stdout)
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 1), "re-importing changes nothing"

    status = json.loads(tenpo("cloud", "status", "--json", *db).stdout)
    (store,) = status["stores"]
    assert {k: store[k] for k in ("store_id", "online", "last_seen", "last_applied_seq", "events_applied",
                                  "dead_letters")} == {  # fmt: skip
        "store_id": "S001", "online": False, "last_seen": None, "last_applied_seq": 0, "events_applied": 0,
        "dead_letters": 0,
    }
    assert status["totals"]["latest_change"] == 1, "one product change in the feed"


def test_bad_database_url_is_one_line(tmp_path: Path) -> None:
    result = tenpo("cloud", "status", "--db", "mysql://nope")
    assert result.returncode == 1 and result.stderr.strip() == (
        "tenpo: --db 'mysql://nope': use sqlite:///path or postgresql://user@host/db"
    )
