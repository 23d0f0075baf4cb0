"""A packet capture without tcpdump: every frame on every interface of the namespace it runs
in (an ``AF_PACKET`` raw socket, as root), appended to a file until SIGTERM::

    ip netns exec NS python sniff.py OUT_FILE

Frames are written as a u32 length (little-endian) and the frame's bytes.
"""

from __future__ import annotations

import signal
import socket
import struct
import sys

ETH_P_ALL = 0x0003


def main(path: str) -> None:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.settimeout(0.2)
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with open(path, "wb") as out:
        print("capturing", flush=True)
        while running:
            try:
                frame = sock.recv(65536)
            except TimeoutError:
                continue
            out.write(struct.pack("<I", len(frame)) + frame)
        out.flush()


if __name__ == "__main__":
    main(sys.argv[1])
