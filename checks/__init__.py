"""Checks usable on their own: preflight (settings, DNS, backends) and the gateway smoke check."""
