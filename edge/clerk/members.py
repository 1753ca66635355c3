"""Members: search as you type, the (audited) profile, offline registration."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from tenpo.edge.clerk.accounts import Clerk
from tenpo.edge.clerk.dialogs import with_manager
from tenpo.edge.clerk.values import Profile
from tenpo.edge.clerk.view import Field, FormScreen, Panel, day_time, fit, in_thread, right, run_async, sync_table, yen
from tenpo.edge.membership.edits import update_member  # issue 18 (H9)
from tenpo.edge.membership.rules import current_rules
from tenpo.shared.errors import UserError
from tenpo.shared.field_bounds import MAX_FIELD_CHARS  # issue 14: inputs bounded
from tenpo.shared.terminal import safe_text

if TYPE_CHECKING:
    from tenpo.edge.clerk.app import ClerkApp

REGISTER_FIELDS = (
    Field("name", "名前 name", "佐藤 花子"),
    Field("kana", "読み kana", "サトウ ハナコ"),
    Field("phone", "電話 phone", "090-1234-5678"),
    Field("email", "メール email", "hanako@example.jp"),
    Field("card_no", "カード card", "member card number", aliases=("card",)),
)


class MembersPanel(Panel):
    title = "Members"
    BINDINGS = [
        Binding("f8", "register", "New member"),
        Binding("down", "to_results", "Results", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield Input(placeholder="card, phone, e-mail, name or kana (読み)", id="member-query", compact=True,
                    max_length=MAX_FIELD_CHARS)  # fmt: skip
        table: DataTable[Any] = DataTable(id="member-results", cursor_type="row")
        table.add_column("名前 name", key="name")
        table.add_column("読み kana", key="kana")
        table.add_column("card", key="card")
        table.add_column("phone", key="phone")
        table.add_column("points", key="points")
        yield table
        yield Static("type to search · ↓ results · Enter opens the profile (the view is audited)", classes="muted")

    def focus_first(self) -> None:
        self.query_one("#member-query", Input).focus()

    @on(Input.Changed, "#member-query")
    def _typed(self) -> None:
        self.reload()

    @on(Input.Submitted, "#member-query")
    def _submitted(self) -> None:
        self.action_to_results()

    def fetch(self) -> list[Any]:
        query = self.query_one("#member-query", Input).value
        return self.clerk_app.data.search_members(query)

    def show(self, members: list[Any]) -> None:
        rows = [
            (m.member_id, (fit(m.name or "", 20), fit(m.kana or "", 16), m.card_no or "-", _local_phone(m.phone),
                           right(f"{m.points:,}")))  # fmt: skip
            for m in members
        ]
        sync_table(self.query_one("#member-results", DataTable), rows)

    @property
    def clerk_app(self) -> ClerkApp:
        return self.app  # type: ignore[return-value]

    def show_registered(self, member_id: str) -> None:
        """After a registration: the search box holds what finds the new member (cursor at the end, ready
        for the next search), and the results show that member."""
        run_async(self, partial(self._show_registered, member_id), exclusive=True, group="registered")

    async def _show_registered(self, member_id: str) -> None:
        found = await in_thread(self.clerk_app.data.search_members, member_id)
        search = self.query_one("#member-query", Input)
        with search.prevent(Input.Changed):
            search.value = _search_for(found[0]) if found else ""
        search.cursor_position = len(search.value)
        search.focus()
        self.show(found)

    def action_to_results(self) -> None:
        table = self.query_one("#member-results", DataTable)
        if table.row_count:
            table.focus()

    @on(DataTable.RowSelected, "#member-results")
    def _open(self, event: DataTable.RowSelected) -> None:
        member_id = event.row_key.value
        if member_id:
            self.app.push_screen(ProfileScreen(member_id))

    def action_register(self) -> None:
        data = self.clerk_app.data

        def submit(values: dict[str, str]) -> str:
            fields = {key: (value.strip() or None) for key, value in values.items()}
            name = fields.pop("name") or ""
            return data.register_member({"name": name, **fields})

        def done(member_id: str | None) -> None:
            if member_id:
                self.app.notify(f"registered {member_id} (provisional until HQ confirms)")
                self.show_registered(member_id)

        rules = data._locked(current_rules, data.db.conn)  # the chain's rules from HQ: the consent wording to read out
        note = f"同意 consent: {rules.consent_text}" if rules and rules.consent_text else ""
        self.app.push_screen(FormScreen("新規会員登録 · register a member (works offline)", REGISTER_FIELDS, submit, note),
                             done)  # fmt: skip


def _search_for(member: Any) -> str:
    """What a clerk would type to find this member again: card, else phone, else name."""
    return member.card_no or _local_phone(member.phone) if (member.card_no or member.phone) else (member.name or "")


def _local_phone(phone: str | None) -> str:
    """+819012345678 -> 090-1234-5678: how a Japanese clerk reads a number back to the customer."""
    if not phone:
        return "-"
    if phone.startswith("+81") and len(phone) == 13:
        national = "0" + phone[3:]
        return f"{national[:3]}-{national[3:7]}-{national[7:]}"
    return phone


class ProfileScreen(Screen[None]):
    """One member. Opening it writes the audit entry first (in the worker), then shows the data."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("f4", "checkout", "Checkout for member"),
        Binding("f9", "export", "Export"),
        Binding("f6", "edit", "Edit"),  # issue 18 (H9): contact fields and consent -> member.updated
    ]

    def __init__(self, member_id: str) -> None:
        super().__init__()
        self.member_id = member_id
        self.profile: Profile | None = None

    @property
    def clerk_app(self) -> ClerkApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static("", id="status")
        yield Static("opening…", id="profile-head")
        with Horizontal(id="profile-tables"):
            with Vertical():
                yield Static("ポイント履歴 points ledger", classes="section")
                yield DataTable(id="ledger", cursor_type="row")
            with Vertical():
                yield Static("購入履歴 purchases", classes="section", id="purchases-title")
                yield DataTable(id="purchases", cursor_type="row")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.clerk_app.paint_status()
        ledger = self.query_one("#ledger", DataTable)
        for label in ("when", "pt", "kind"):
            ledger.add_column(label, key=label)
        purchases = self.query_one("#purchases", DataTable)
        for label in ("when", "receipt", "total"):
            purchases.add_column(label, key=label)
        run_async(self, self._open, exclusive=True, group="profile")

    async def _open(self) -> None:
        clerk = self.clerk_app.clerk
        assert clerk is not None
        try:
            profile = await in_thread(self.clerk_app.data.open_profile, clerk.clerk_id, self.member_id)
        except UserError as exc:
            self.query_one("#profile-head", Static).update(Text(safe_text(f"✗ {exc}")))
            return
        self.profile = profile
        # The audited view is one more unsent event: show it in the status line now, not at the next watch tick.
        self.clerk_app.link = await in_thread(self.clerk_app.data.link)
        self.clerk_app.paint_status()
        self.query_one("#profile-head", Static).update(profile_text(profile))
        ledger = self.query_one("#ledger", DataTable)
        for at, delta, kind, _ref in profile.ledger:
            ledger.add_row(day_time(at), right(f"{delta:+,}"), fit(kind, 10))
        purchases = self.query_one("#purchases", DataTable)
        for at, receipt_no, total, _earned in profile.purchases:
            purchases.add_row(at[5:16].replace("T", " "), receipt_no, right(yen(total)))
        self.query_one("#purchases-title", Static).update(f"購入履歴 purchases ({profile.purchases_source})")

    def action_checkout(self) -> None:
        if self.profile is not None:
            self.clerk_app.start_checkout(self.member_id)

    def action_edit(self) -> None:
        """The member is at the counter: change contact fields or consent (sent to HQ with this clerk's id)."""
        clerk = self.clerk_app.clerk
        if self.profile is None or clerk is None:
            return
        data, member_id = self.clerk_app.data, self.member_id
        form = edit_fields(self.profile.member)

        def submit(values: dict[str, str]) -> bool:
            consent = parse_consent(values.pop("consent"))
            data._locked(update_member, data.db, member_id, clerk.clerk_id, member_present=True, consent=consent,
                         fields={k: (v.strip() or None) for k, v in values.items()})  # fmt: skip
            return True

        def done(saved: bool | None) -> None:
            if saved:
                self.app.notify("saved here and sent to HQ; the newest edit of each field wins")
                run_async(self, self._open, exclusive=True, group="profile")

        self.app.push_screen(FormScreen(f"会員情報の変更 · edit {member_id} (the member is here)", form, submit), done)

    def action_export(self) -> None:
        def export(approver: Clerk | None) -> None:
            run_async(self, partial(self._export, approver), exclusive=True, group="export")

        with_manager(self.clerk_app, "export of this member's data", export)

    async def _export(self, approver: Clerk | None) -> None:
        clerk = self.clerk_app.clerk
        assert clerk is not None
        try:
            path = await in_thread(self.clerk_app.data.export_member, clerk, self.member_id, None, approver)
        except UserError as exc:
            self.app.notify(str(exc), severity="error")
            return
        self.app.notify(f"exported to {path} (audited)")


def edit_fields(m: Any) -> tuple[Field, ...]:
    consent = ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in sorted(m.consent.items()))
    return (Field("name", "名前 name", "", value=m.name or ""), Field("kana", "読み kana", "", value=m.kana or ""),
            Field("phone", "電話 phone", "", value=_local_phone(m.phone) if m.phone else ""),
            Field("email", "メール email", "", value=m.email or ""),
            Field("consent", "同意 consent", "sms=yes, dm=no", value=consent))  # fmt: skip


def parse_consent(text: str) -> dict[str, bool]:
    """``sms=yes, dm=no`` -> {"sms": True, "dm": False}; UserError naming a part that is not PURPOSE=yes|no."""
    consent: dict[str, bool] = {}
    for part in text.replace(",", " ").split():
        purpose, _, said = part.partition("=")
        if not purpose or said.lower() not in ("yes", "no"):
            raise UserError(f"consent: {part[:40]!r} is not PURPOSE=yes or PURPOSE=no")
        consent[purpose] = said.lower() == "yes"
    return consent


def profile_text(profile: Profile) -> Text:
    """Plain Text, never markup: names and custom fields are customer data and may hold brackets."""
    m = profile.member
    consent = ", ".join(f"{k} {'✓' if v else '✗'}" for k, v in sorted(m.consent.items())) or "none recorded"
    custom = safe_text(", ".join(f"{k}: {v}" for k, v in sorted(m.custom.items())) or "-")
    status = "provisional (not yet unified by HQ)" if m.provisional else "unified at HQ"
    shown = {key: safe_text(value or "") for key, value in (("name", m.name), ("kana", m.kana), ("email", m.email),
             ("card", m.card_no), ("line", m.line_user_id))}  # escapes shown, never obeyed  # fmt: skip
    return Text.assemble(
        (shown["name"] or "?", "bold"), f"  {shown['kana']}   {m.member_id}  {status}\n",
        f"card {shown['card'] or '-'}   phone {safe_text(_local_phone(m.phone))}   e-mail {shown['email'] or '-'}\n",
        f"LINE {shown['line'] or '-'}   home store {m.home_store or '-'}\n",
        f"consent: {safe_text(consent)}\n",
        f"custom: {fit(custom, 70)}\n",
        "points balance ", (f"{m.points:,}", "bold"), " pt",
        *_recommended_line(profile),  # issue 17 (H6)
        *_loyalty_line(profile),  # issue 17 (H7)
    )


def _loyalty_line(profile: Profile) -> tuple[str, ...]:  # issue 17 (H7): rank and expiring points, offline too
    held = profile.loyalty
    if held is None or not (held.rank or held.lots):
        return ()
    return (f"\nランク rank: {fit(safe_text(held.summary()), 62)}",)


def _recommended_line(profile: Profile) -> tuple[str, ...]:
    """HQ's recommendations as kept at the store (shown offline too); names are outside text."""
    if not profile.recommendations:
        return ()
    shown = ", ".join(safe_text(r.name or r.sku) for r in profile.recommendations[:5])
    return (f"\nおすすめ recommended: {fit(shown, 66)}",)
