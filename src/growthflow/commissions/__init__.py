"""Affiliate commissions ELT: landing zone -> bronze -> silver -> gold, with corrections."""
