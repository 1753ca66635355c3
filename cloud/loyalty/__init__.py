"""Loyalty at HQ (issue 17): points expiry in lots and member ranks, sent to the stores (docs/loyalty.md)."""
