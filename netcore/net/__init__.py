"""Peers and links: identity, mDNS discovery, the CURVE transport (ROUTER/DEALER, ZAP, pumps),
the peer table and liveness, static peers and peer sharing, clone detection, connection guard."""
