"""Member merges and erasures from HQ, and the audit of personal-data views — issue 9 (and 7)."""
