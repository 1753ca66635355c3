"""HQ's side of store audit events: personal-data views and pickup reservations (issue 7)."""
