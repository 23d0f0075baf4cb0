"""What one relay allows, so that it is safe to run for strangers (``p2pai relay`` options)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from netcore.config.sizes import GIB, MIB


@dataclass(frozen=True, slots=True)
class RelayLimits:
    max_reservations: int = 1024
    """Nodes holding a reservation at once; past it a new one is refused (``overloaded``)."""
    reservation_ttl: float = 30.0
    """A reservation not renewed for this long expires (nodes renew every third of it)."""
    circuits_per_peer: int = 16
    """Circuits (open or being set up) one reservation takes part in at once."""
    max_circuits: int = 4096
    """Circuits of the whole relay at once (open or being set up)."""
    circuit_bytes: int = 256 * MIB
    """Bytes one circuit carries (both ways); then it is closed (the peers reconnect)."""
    circuit_seconds: float = 3600.0
    """How long one circuit lasts; then it is closed (the peers reconnect)."""
    peer_bytes_per_hour: int = 4 * GIB
    """Bytes the circuits of one reservation carry in an hour (checked at each circuit's
    start: a circuit gets at most what is left)."""
    pending_seconds: float = 10.0
    """A circuit whose two halves have not both arrived by then is dropped."""
    max_links: int = 0
    """TCP connections not yet part of a circuit (control links, halves waiting); 0 means
    ``max_reservations + 2 * max_circuits + 64``."""
    handshake_seconds: float = 5.0
    """A new connection that has not said what it is (ZMTP or a circuit preamble) by then is closed."""

    @property
    def links_cap(self) -> int:
        return self.max_links or self.max_reservations + 2 * self.max_circuits + 64

    def public(self) -> dict[str, float]:
        """What a relay tells nodes in ``relay_reserved`` (for ``doctor``)."""
        return {k: v for k, v in asdict(self).items() if k != "max_links"}
