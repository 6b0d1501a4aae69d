"""Profiles of verification and drafting cost: measured on this machine (torch) or roofline-modelled."""
