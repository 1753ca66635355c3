"""Demo, issue 7: a manager account for Shibuya's clerk terminal, and how to open it.

`tenpo demo --dir d` keeps the files; then `tenpo clerk --config d/S001/S001.toml` opens the terminal
on Shibuya's replica (sign in as 1001, PIN 246813) with the member, her arrival and the sales of the demo.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tenpo.edge.clerk.accounts import add_clerk, sign_in
from tenpo.edge.clerk.data import ClerkData
from tenpo.edge.config import load_config

if TYPE_CHECKING:
    from tenpo.demo import Demo  # the demo imports its scenarios

CLERK_ID, PIN = "1001", "246813"


def run(demo: Demo) -> None:
    db = demo.dbs["S001"]
    demo.step("Shibuya's clerk terminal: a manager account, then what the terminal shows")
    clerk = add_clerk(db, CLERK_ID, "山田 店長", "manager", PIN, replace=True)
    demo.check("the manager signs in with the PIN", lambda: sign_in(db, CLERK_ID, PIN).is_manager)
    data = ClerkData(load_config(str(demo.config_paths["S001"])))
    try:
        home = data.home()
        demo.say(f"    home: {home.store_name} online={home.online} backlog {home.backlog}")
        found = data.search_members("さとう")
        if found:
            profile = data.open_profile(clerk.clerk_id, found[0].member_id)
            demo.say(f"    profile opened (audited, member.viewed sent to HQ): {profile.member.name} {profile.member.points} pt")
        for arrival in data.arrivals(5):
            demo.say(f"    arrival: {arrival.name} ({arrival.kana}) {arrival.points} pt")
    finally:
        data.close()
    demo.say(f"    open it: tenpo clerk --config {demo.config_paths['S001']}   (clerk {CLERK_ID}, PIN {PIN};"
             " keep the files with `tenpo demo --dir DIR`)")
