"""``p2pai doctor``: why does this node see no peers? Each finding comes with its fix.

This package is the engine behind the ``p2pai doctor`` command: :func:`run_doctor` runs the
checks below in order and returns a :class:`Report` (its text or JSON is what the command
prints; :func:`exit_code` is 2 when it holds a problem). Each check lives in its own module:
``interfaces`` (1, 2), ``mdns`` (3), ``connect`` (4, peer clocks of 5), ``system`` (the local
clock of 5, 6), ``relays`` (7), with ``report`` holding the findings and ``run`` the order.

The checks, in order:

1. **interfaces**: the IPv4 addresses the node would serve on, and on which interface.
2. **multicast**: each interface is up and multicast-capable, and a datagram sent to the mDNS
   group on it comes back to us (link-local, TTL 1; only on the node's own interfaces).
3. **mdns**: we browse ``_p2pai._tcp.local.`` like a node does, but keep *every* answer: nodes
   of our swarm, nodes of **other network names** (a node silently ignores those), records
   that break the rules, and **duplicate ids** (one identity on two machines: a copied data
   directory). Other mDNS services answering tell "multicast works, no node here" apart from
   "nothing answers at all".
4. **connect**: a throw-away client node (its own temporary identity, not advertised) connects
   to each node found and to each static ``--peer``: a node that answers mDNS but not on TCP
   points at a firewall.
5. **clock**: our clock's NTP state, and each peer's clock from its ``hello`` ``time``.
6. **firewall**: active nftables/iptables/ufw/firewalld rules, with the lines that open
   UDP 5353 and the node's TCP port.
7. **relay**: each ``--relay`` answers on TCP, completes the CURVE handshake to the key in its
   address and grants a reservation (``relays``); the round trip; and public or NATed, from
   where the relay says it sees us (``relay_reserved``'s ``observed``); whether hole
   punching can work (a second link from a port of ours: does the NAT keep it?).

Nothing here sends anywhere but to the mDNS group on the chosen interfaces and to the
endpoints the nodes themselves advertise (or the user gave with ``--peer`` and ``--relay``).
"""

from __future__ import annotations

from netcore.doctor.report import Finding, Report, exit_code
from netcore.doctor.run import run_doctor

__all__ = ["Finding", "Report", "exit_code", "run_doctor"]
