"""Advance ship notices and dock inspection reports at HQ — issue 4."""
