"""The HQ sync monitor (`tenpo hq`, a Textual app) — issue 8."""
