"""Dock inspection: ASNs, RFID read sessions, verdicts, receipts into stock — issue 4."""
