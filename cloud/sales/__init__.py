"""Sales, returns and HQ reconciliation (points below zero, stock oversold) — issue 5."""
