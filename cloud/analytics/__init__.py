"""HQ analytics (issue 17): RFM and segments, F2 and retention, LTV, basket rules, recommendations.

Pure computations over purchase rows (``model``, ``rfm``, ``retention``, ``basket``, ``recommend``)
are kept apart from the SQL that reads and keeps them (``source``, ``tables``, ``refresh``).
docs/analytics.md has the definitions.
"""
