"""Reservations this store holds for a channel or another store's clerk (issue 18, docs/channel.md):
``available = on_hand - reserved``, confirmed by the agent when available covers the quantity, made
ready or rejected by the clerk, consumed by the sale that hands the item over."""
