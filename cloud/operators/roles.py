"""Who may do what at HQ: the roles matrix (docs/operators.md), pure.

viewer reads; operator also retries and discards dead letters, resolves conflicts and rejects a
suggested match; admin also merges, unmerges, erases and exports members, accepts a suggested match
(a merge) and manages operator accounts.
"""

from __future__ import annotations

from typing import Final

ROLES: Final = ("viewer", "operator", "admin")
RANK: Final = {role: n for n, role in enumerate(ROLES)}

# action -> (least role, what it is, in words for a refusal)
ACTIONS: Final[dict[str, tuple[str, str]]] = {
    "monitor.view": ("viewer", "watch the HQ monitor"),
    "member.show": ("viewer", "view a member's record"),
    "dead_letter.retry": ("operator", "retry dead letters"),
    "dead_letter.discard": ("operator", "discard dead letters"),
    "conflict.resolve": ("operator", "resolve conflicts"),
    "review.reject": ("operator", "reject a suggested match"),
    "review.accept": ("admin", "accept a suggested match (a merge)"),
    "member.merge": ("admin", "merge members"),
    "member.unmerge": ("admin", "unmerge members"),
    "member.erase": ("admin", "erase members"),
    "member.export": ("admin", "export members"),
    "operator.manage": ("admin", "manage operator accounts"),
    "settings.change": ("admin", "change the chain's rules and limits"),
}


def allowed(role: str, action: str) -> bool:
    least, _what = ACTIONS[action]
    return RANK.get(role, -1) >= RANK[least]


def refusal(name: str, role: str, action: str) -> str | None:
    """None when allowed; else one line saying why (the role it needs)."""
    if allowed(role, action):
        return None
    least, what = ACTIONS[action]
    needs = "an admin" if least == "admin" else "an operator or an admin"
    return f"{name} is a {role}: only {needs} may {what}"
