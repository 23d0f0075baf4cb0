"""Whom to believe: the trust list (allowlist), reputation and its SQLite store, and the
TrustManager that applies them to connections and to the scheduler's choice of workers."""
