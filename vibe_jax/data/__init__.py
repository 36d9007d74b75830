"""Data sets, attacks and poisoning."""
