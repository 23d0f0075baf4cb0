"""An mDNS forger, run as its own process: unauthenticated DNS-SD packets about other nodes.

    python tests/mdns_forger.py goodbye --instance PEER_ID [--instance PEER_ID ...]
    python tests/mdns_forger.py rename --instance PEER_ID --key Z85 --net NET --port PORT \
        [--name evil-twin] [--caps ""]

``goodbye`` sends, for each instance, the records a leaving node sends (PTR, SRV, TXT and A
with TTL 0), as if those nodes had left. ``rename`` sends a valid-looking TXT record (right
``v``, ``id`` = hash of ``key``, right ``net``) with another ``name`` and ``caps``, and the
SRV/A records beside it, with the cache-flush bit: what a node's own re-announcement
looks like. Each packet goes out a few times (as a responder repeats announcements), on
127.0.0.1 only. Prints one line per packet and exits 0.
"""

from __future__ import annotations

import argparse
import socket
import time

from zeroconf import DNSOutgoing, IPVersion, ServiceInfo, Zeroconf
from zeroconf.const import _FLAGS_AA, _FLAGS_QR_RESPONSE

SERVICE_TYPE = "_p2pai._tcp.local."


def forged_info(instance: str, properties: dict[str, str], port: int) -> ServiceInfo:
    return ServiceInfo(
        SERVICE_TYPE,
        f"{instance}.{SERVICE_TYPE}",
        addresses=[socket.inet_aton("127.0.0.1")],
        port=port,
        properties=properties,
        server=f"{instance}.local.",
    )


def goodbye_packet(infos: list[ServiceInfo]) -> DNSOutgoing:
    out = DNSOutgoing(_FLAGS_QR_RESPONSE | _FLAGS_AA)
    for info in infos:
        out.add_answer_at_time(info.dns_pointer(override_ttl=0), 0)
        out.add_answer_at_time(info.dns_service(override_ttl=0), 0)
        out.add_answer_at_time(info.dns_text(override_ttl=0), 0)
        for record in info.dns_addresses(override_ttl=0):
            out.add_answer_at_time(record, 0)
    return out


def announce_packet(info: ServiceInfo) -> DNSOutgoing:
    out = DNSOutgoing(_FLAGS_QR_RESPONSE | _FLAGS_AA)
    out.add_answer_at_time(info.dns_pointer(), 0)
    out.add_answer_at_time(info.dns_service(), 0)
    out.add_answer_at_time(info.dns_text(), 0)
    for record in info.dns_addresses():
        out.add_answer_at_time(record, 0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("goodbye", "rename"))
    parser.add_argument("--instance", action="append", required=True)
    parser.add_argument("--key", default="")
    parser.add_argument("--net", default="")
    parser.add_argument("--port", type=int, default=9)
    parser.add_argument("--name", default="evil-twin")
    parser.add_argument("--caps", default="")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    try:
        if args.what == "goodbye":
            infos = [forged_info(i, {}, args.port) for i in args.instance]
            packet = goodbye_packet(infos)
        else:
            (instance,) = args.instance
            props = {"v": "1", "id": instance, "key": args.key, "net": args.net,
                     "name": args.name, "caps": args.caps}  # fmt: skip
            packet = announce_packet(forged_info(instance, props, args.port))
        for n in range(args.repeat):
            zc.send(packet)
            print(
                f"sent {args.what} {n + 1}/{args.repeat} for {','.join(args.instance)}", flush=True
            )
            time.sleep(0.25)
    finally:
        zc.close()


if __name__ == "__main__":
    main()
