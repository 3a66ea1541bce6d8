"""Parity between the tiers: per-hour checksums on both sides, and the audit built on them."""
