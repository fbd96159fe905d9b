"""Governance of the API: principals and their credentials, access tokens, secrets at rest,
rate limits and the hash-chained audit log."""
