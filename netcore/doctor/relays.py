"""Check 7 (relays): each ``--relay`` answers on TCP, completes the CURVE handshake to the key
in its address and grants a reservation, how long a control round trip takes, and whether
this machine looks public or NATed from there (``relay_reserved``'s ``observed``), and
whether hole punching can work: a second control link leaves from a source port we chose,
and the port the relay sees it come from tells whether the NAT keeps source ports (what
:mod:`netcore.net.punch` relies on; a symmetric NAT picks a new one).

The probe is what a node does when it reserves (:mod:`netcore.net.relay_client`), with a
throw-away key and a network name of its own (``p2pai-doctor-<random>``), so that no node of
ours sees the doctor in the relay's registry; it leaves at once (``relay_leave``).
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import zmq

from netcore.config.peers import StaticPeer, parse_relay
from netcore.config.settings import Config, ConfigError
from netcore.doctor.report import INFO, OK, PROBLEM, WARN, Finding, Report
from netcore.wire import protocol
from netcore.wire import relay as wire
from netcore.wire.protocol import ProtocolError

CHECK = "relay"


@dataclass(slots=True)
class Probe:
    """What one relay answered; ``stage`` is where it stopped: ``tcp``, ``curve``,
    ``refused``, ``malformed`` or ``ok``."""

    relay: StaticPeer
    stage: str = "tcp"
    error: str = ""
    tcp_ms: float | None = None
    rtt_ms: float | None = None
    observed: tuple[str, int] | None = None
    limits: dict[str, Any] = field(default_factory=dict)
    probe_port: int | None = None
    """The source port the second link left from (chosen by us), None: no such link."""
    probe_observed: tuple[str, int] | None = None
    """Where the relay saw the second link come from."""
    port_kept: bool | None = None
    """Whether the NAT kept :attr:`probe_port`; None: unknown (:attr:`port_error` says why)."""
    port_error: str = ""


def probe_tcp(relay: StaticPeer, timeout: float) -> tuple[float | None, str]:
    """Connect time in ms, or None and why not (one line)."""
    start = time.perf_counter()
    try:
        with socket.create_connection((relay.host, relay.port), timeout=timeout):
            return (time.perf_counter() - start) * 1000, ""
    except socket.gaierror:
        return None, f"the host name {relay.host!r} does not resolve"
    except ConnectionRefusedError:
        return None, f"{relay.host}:{relay.port} refused the connection (nothing listens there)"
    except TimeoutError:
        return None, f"{relay.host}:{relay.port} did not answer in {timeout:g}s"
    except OSError as exc:
        return None, f"{relay.host}:{relay.port}: {exc.strerror or exc}"


def probe_relay(relay: StaticPeer, timeout: float) -> Probe:
    """Blocking (run it in a thread): TCP, then a reservation over CURVE, then a renewal
    whose round trip is the RTT, then a second reservation from a source port of ours."""
    found = Probe(relay)
    found.tcp_ms, found.error = probe_tcp(relay, timeout)
    if found.tcp_ms is None:
        return found
    found.stage = "curve"
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        _reserve(ctx, relay, timeout, found)
        if found.stage == "ok" and found.observed is not None:
            probe_source_port(ctx, relay, timeout, found)
        return found
    except zmq.ZMQError as exc:
        found.error = found.error or f"ZeroMQ: {exc}"
        return found
    finally:
        ctx.term()


def _control_link(ctx: zmq.Context[Any], relay: StaticPeer, source: str = "") -> zmq.Socket[Any]:
    """A DEALER to the relay under a throw-away key; ``source`` (``host:port``): the local
    address its TCP connection leaves from (ZeroMQ's ``tcp://source;destination``)."""
    sock = ctx.socket(zmq.DEALER)
    try:
        public, secret = zmq.curve_keypair()
        sock.setsockopt(zmq.LINGER, 200)
        sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_FRAME)
        sock.setsockopt(zmq.CURVE_SERVERKEY, relay.key.encode("ascii"))
        sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
        if ":" in relay.host:
            sock.setsockopt(zmq.IPV6, 1)
        target = relay.endpoint.removeprefix("tcp://")
        sock.connect(f"tcp://{source};{target}" if source else relay.endpoint)
    except zmq.ZMQError:
        sock.close(linger=0)
        raise
    return sock


def _hello() -> dict[str, Any]:
    return {"net": f"p2pai-doctor-{secrets.token_hex(4)}", "name": "p2pai-doctor", "caps": []}


def _reserve(ctx: zmq.Context[Any], relay: StaticPeer, timeout: float, found: Probe) -> None:
    """The first link: the CURVE handshake, a reservation, its renewal's round trip."""
    sock = _control_link(ctx, relay)
    try:
        hello = _hello()
        deadline = time.monotonic() + timeout
        reply = _ask(sock, {"t": wire.RESERVE, **hello}, deadline)
        if reply is None:
            found.error = f"no CURVE handshake with key {relay.key[:8]}… in {timeout:g}s"
            return
        if isinstance(reply, str):
            found.stage, found.error = "malformed", reply
            return
        if reply["t"] == "error":
            found.stage = "refused"
            found.error = f"{reply['code']}: {reply['message']}"
            return
        found.stage = "ok"
        found.observed = wire.observed_address(reply)
        limits = reply.get("limits")
        found.limits = limits if isinstance(limits, dict) else {}
        start = time.perf_counter()
        again = _ask(sock, {"t": wire.RESERVE, **hello}, time.monotonic() + timeout)
        if isinstance(again, dict) and again["t"] == wire.RESERVED:
            found.rtt_ms = (time.perf_counter() - start) * 1000
        sock.send(wire.encode({"t": wire.LEAVE}), zmq.DONTWAIT)
    finally:
        sock.close(linger=200)


def free_port(wildcard: str) -> int:
    """A TCP port free on this machine now (bound with port 0, read, closed)."""
    family = socket.AF_INET6 if ":" in wildcard else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((wildcard, 0))
        return int(sock.getsockname()[1])


def probe_source_port(
    ctx: zmq.Context[Any], relay: StaticPeer, timeout: float, found: Probe
) -> None:
    """A second control link from a free port P of ours, reserved under another throw-away
    key: the relay's ``observed`` port for it is P when the NAT keeps source ports (hole
    punching predicts our public address as (observed host, P)); anything else: it does not."""
    wildcard = "::" if ":" in relay.host else "0.0.0.0"
    try:
        port = free_port(wildcard)
    except OSError as exc:
        found.port_error = f"no free local port for a second link: {exc.strerror or exc}"
        return
    found.probe_port = port
    source = f"[{wildcard}]:{port}" if ":" in wildcard else f"{wildcard}:{port}"
    try:
        sock = _control_link(ctx, relay, source)
    except zmq.ZMQError as exc:
        found.port_error = f"a second link from port {port} did not start: {exc}"
        return
    try:
        reply = _ask(sock, {"t": wire.RESERVE, **_hello()}, time.monotonic() + timeout)
        if reply is None:
            found.port_error = f"a second link from port {port} got no answer in {timeout:g}s"
        elif isinstance(reply, str):
            found.port_error = reply
        elif reply["t"] != wire.RESERVED:
            found.port_error = f"a second reservation was refused: {reply.get('code')}"
        else:
            sock.send(wire.encode({"t": wire.LEAVE}), zmq.DONTWAIT)
            seen = wire.observed_address(reply)
            if seen is None:
                found.port_error = "the relay did not say where it sees a second link from"
            else:
                found.probe_observed = seen
                found.port_kept = seen[1] == port
    except zmq.ZMQError as exc:
        found.port_error = f"a second link from port {port}: ZeroMQ: {exc}"
    finally:
        sock.close(linger=200)


def _ask(
    sock: zmq.Socket[Any], msg: dict[str, Any], deadline: float
) -> dict[str, Any] | str | None:
    """The reply to ``msg``; a str says what was wrong with it; None: no reply by then."""
    rid = protocol.new_id()
    sock.send(wire.encode({**msg, "id": rid}))
    while (left := deadline - time.monotonic()) > 0:
        if not sock.poll(int(left * 1000) + 1):
            return None
        frame = sock.recv()
        try:
            reply = wire.decode(frame)
        except ProtocolError as exc:
            return f"the relay sent a malformed message: {exc.message}"
        if reply.get("id") == rid:
            return reply
    return None


def findings(probe: Probe, local: set[str]) -> list[Finding]:
    """The report's lines for one relay, each with its fix."""
    relay = probe.relay
    name = f"relay {relay.host}:{relay.port}"
    details: dict[str, Any] = {
        "relay": relay.text, "stage": probe.stage, "error": probe.error,
        "tcp_ms": probe.tcp_ms, "rtt_ms": probe.rtt_ms,
        "observed": _text(probe.observed),
        "public": None, "probe_port": probe.probe_port,
        "probe_observed": _text(probe.probe_observed), "port_kept": probe.port_kept,
        "punch": None, "port_error": probe.port_error,
    }  # fmt: skip
    if probe.stage == "tcp":
        return [Finding(
            CHECK, PROBLEM, f"{name} does not answer on TCP: {probe.error}",
            "check host and port in the address (`p2pai relay` prints it), that the relay "
            f"runs, and that its firewall (a cloud VM's security group too) allows TCP "
            f"{relay.port}", details,
        )]  # fmt: skip
    if probe.stage == "curve":
        return [Finding(
            CHECK, PROBLEM, f"{name} answers on TCP but not as the relay of the key in its "
            f"address ({probe.error})",
            "the key after '#' is not that relay's (or it is no p2pai relay): copy the "
            "address again from the relay's `ready` line or its log", details,
        )]  # fmt: skip
    if probe.stage == "refused":
        return [Finding(
            CHECK, PROBLEM, f"{name} refused a reservation: {probe.error}",
            "the relay is at its limits: use another relay, or ask its operator to raise "
            "them (`p2pai relay --help`)", details,
        )]  # fmt: skip
    if probe.stage == "malformed":
        return [Finding(
            CHECK, PROBLEM, f"{name}: {probe.error}",
            "run the same p2pai version on the relay and on this machine", details,
        )]  # fmt: skip
    rtt = f", round trip {probe.rtt_ms:.1f} ms" if probe.rtt_ms is not None else ""
    out = [Finding(
        CHECK, OK, f"{name} answered: key matches, reservation granted{rtt} "
        f"(TCP connect {probe.tcp_ms or 0:.1f} ms)", details=details,
    )]  # fmt: skip
    if probe.observed is None:
        out.append(Finding(
            CHECK, INFO, f"{name} does not say where it sees us from (an older relay): "
            "public or NATed is unknown", "update p2pai on the relay", details,
        ))  # fmt: skip
        return out
    host, port = probe.observed
    details["public"] = host in local
    if host in local:
        out.append(Finding(
            CHECK, OK, f"this machine looks public to {name}: it sees us at {host}:{port}, "
            "an address of ours (no NAT between us)", details=details,
        ))  # fmt: skip
    else:
        out.append(Finding(
            CHECK, INFO, f"this machine is behind a NAT as {name} sees it: it sees us at "
            f"{host}:{port}, not at any address of ours ({', '.join(sorted(local)) or 'none'})",
            "keep --relay on `p2pai node` so that nodes elsewhere reach this one through the "
            "relay; for direct connections forward a fixed --port on the router", details,
        ))  # fmt: skip
    out.append(_punch_finding(probe, name, public=host in local, details=details))
    return out


def _text(addr: tuple[str, int] | None) -> str | None:
    if addr is None:
        return None
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"


def _punch_finding(probe: Probe, name: str, public: bool, details: dict[str, Any]) -> Finding:
    """Whether hole punching can work from here: not needed when public; else whether the
    NAT kept the source port of the second link (:func:`probe_source_port`)."""
    if public:
        details["punch"] = "not needed"
        return Finding(
            CHECK, OK, f"hole punching is not needed: no NAT between us and {name}, peers "
            "connect to this node directly", details=details,
        )  # fmt: skip
    seen = _text(probe.probe_observed)
    if probe.port_kept is None:
        details["punch"] = "unknown"
        why = probe.port_error or "no second link"
        return Finding(
            CHECK, INFO, f"whether hole punching can work is unknown: {why}",
            "update p2pai on the relay, or run the doctor again with a longer --timeout",
            details,
        )  # fmt: skip
    if probe.port_kept:
        details["punch"] = "can work"
        return Finding(
            CHECK, OK, f"hole punching can work: the NAT keeps source ports (a link from "
            f"port {probe.probe_port} reached {name} from {seen})", details=details,
        )  # fmt: skip
    details["punch"] = "will fail"
    return Finding(
        CHECK, WARN, f"the NAT changes source ports (a symmetric NAT as seen by {name}: a "
        f"link from port {probe.probe_port} reached it from {seen}): hole punching will fail; "
        "peers reach this node through the relay (slower, uses its bandwidth)",
        "on the router, turn on port preservation / endpoint-independent mapping (often "
        "'full cone' / 'NAT type open'), or forward a fixed --port to this machine and give "
        "others --peer tcp://<public ip>:<port>#<key>", details,
    )  # fmt: skip


async def check_relays(cfg: Config, local: set[str], timeout: float, report: Report) -> None:
    """One probe per configured relay, all at once; a line when there is none."""
    if not cfg.relays:
        report.add(Finding(
            CHECK, INFO, "no relay configured: relays let nodes behind NATs on different "
            "networks reach each other (one LAN needs none)",
            "to reach beyond this LAN, run `p2pai relay` on a reachable machine and give "
            "its address with --relay tcp://host:port#KEY",
        ))  # fmt: skip
        return
    relays: list[StaticPeer] = []
    for text in cfg.relays:
        try:
            relays.append(parse_relay(text))
        except ConfigError as exc:
            report.add(Finding(CHECK, PROBLEM, str(exc), "fix the --relay option or config file"))
    probes = await asyncio.gather(
        *(asyncio.to_thread(probe_relay, relay, timeout) for relay in relays)
    )
    for probe in probes:
        for finding in findings(probe, local):
            report.add(finding)
    if relays and all(p.stage != "ok" for p in probes):
        report.add(Finding(
            CHECK, WARN, "no configured relay answers: nodes behind other NATs cannot reach "
            "this one", "fix the relay findings above, or add another --relay",
        ))  # fmt: skip
