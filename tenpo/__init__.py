"""Tenpo: in-store edge appliance with cloud sync."""
__version__ = "0.1.0"
