"""Tenpo."""
