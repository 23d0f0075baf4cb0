"""The requester side: choose a worker, time out an attempt, retry elsewhere, and hand each
submitted task's outcome to its caller exactly once.

Each attempt has its own 16-byte id. A reply is matched by that id and removes it, so a late
answer to an attempt already given up (timed out, peer lost) finds nothing and is counted
as a duplicate and dropped: the caller never sees two outcomes for one task.

Which worker gets an attempt follows what was measured of it (:mod:`netcore.tasks.share`);
what a worker refuses or answers is judged here, not taken on its word
(:mod:`netcore.tasks.answers`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from netcore.models.registry import InputMismatch, ModelSpec
from netcore.net.peers import Peer, PeerTable
from netcore.observe.events import Event, TaskRetry
from netcore.tasks.answers import REJECTED, WORKER_VERDICTS, answer_spec, decode_answer
from netcore.tasks.health import AttemptTimer, ModelGaps, RestPolicy, backoff
from netcore.tasks.outcome import TaskOutcome, finished
from netcore.tasks.share import WorkShare
from netcore.tasks.waiting import Waiters
from netcore.wire import protocol

__all__ = ["FREE_RETRY_CODES", "TERMINAL_CODES", "AttemptFailed", "Scheduler", "TaskOutcome"]

log = logging.getLogger("p2pai.scheduler")

# Error codes that end a task at once when the requester itself finds them (a worker that
# says so is retried elsewhere: netcore.tasks.answers).
TERMINAL_CODES = frozenset({"bad_input", "bad_request", "too_large", "unsupported"})
# Error codes that say nothing about the task: retry without spending an attempt.
FREE_RETRY_CODES = frozenset({"overloaded", "hello_required"})

LocalRunner = Callable[
    [str, str | None, Mapping[str, np.ndarray], float],
    Awaitable[tuple[dict[str, np.ndarray], int]],
]


class AttemptFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(slots=True)
class _Attempt:
    peer: Peer
    future: asyncio.Future[dict[str, Any]]
    timer: asyncio.TimerHandle | None = None


class Scheduler:
    def __init__(
        self,
        peers: PeerTable,
        send: Callable[[str, Mapping[str, Any]], bool],
        publish: Callable[[Event], None],
        local: LocalRunner | None = None,
        local_peer_id: str = "self",
        default_timeout: float = 5.0,
        max_attempts: int = 3,
    ) -> None:
        self.peers = peers
        self.send = send
        self.publish = publish
        self.local = local
        self.local_peer_id = local_peer_id
        self.default_timeout = default_timeout
        self.max_attempts = max_attempts
        self._attempts: dict[bytes, _Attempt] = {}
        self._waiters = Waiters()
        self.duplicates = 0
        self.submitted = 0
        self.succeeded = 0
        self.failed = 0
        self.retries = 0
        self.local_model: Callable[[str, str | None], str | None] | None = None
        """The sha256 of our own version of a model (pinned one if given), or None."""
        self.gate: Callable[[Peer], float | None] | None = None
        """Trust and reputation (netcore.trust.manager): None = never use this worker, else a factor
        its cost is multiplied by."""
        self.timer = AttemptTimer()
        """Per-attempt timeouts from each worker's observed latency (netcore.tasks.health)."""
        self.rest = RestPolicy()
        """Workers whose attempts keep failing are rested (netcore.tasks.health)."""
        self.gaps = ModelGaps()
        """Workers that lack a model (answered unknown_model): others are preferred for it."""
        self.observe: Callable[[Peer, str], None] | None = None
        """Told each attempt's fate: ok, failed, timeout, unreachable or corrupt."""
        self.host_of: Callable[[str], str] | None = None
        """A worker's host as the transport sees it (netcore.tasks.voters; None: its own)."""
        self.share = WorkShare()
        """Measured service time and success per worker: its share of the work."""
        self.probation: Callable[[Peer], bool] | None = None
        """True for a worker on probation (TrustManager.on_probation): a bounded share."""
        self.local_spec: Callable[[str, str | None], ModelSpec | None] | None = None
        """Our copy of a model: inputs and answers checked against it (netcore.tasks.answers)."""
        self._slots = Waiters()
        """Tasks waiting because every candidate is at its cap: one woken per freed slot."""

    # --- hooks the node calls ------------------------------------------------------------

    def workers_changed(self) -> None:
        """A worker appeared or became usable: wake tasks waiting for one."""
        self._waiters.wake_all()

    def on_reply(self, peer_id: str, msg: dict[str, Any]) -> bool:
        """A ``result`` or ``error`` arrived from ``peer_id``; False if nobody awaits it."""
        rid = msg.get("id")
        attempt = self._attempts.get(rid) if isinstance(rid, bytes) else None
        if attempt is None or attempt.peer.peer_id != peer_id:
            self.duplicates += 1
            return False
        del self._attempts[rid]  # type: ignore[arg-type]
        if attempt.timer is not None:
            attempt.timer.cancel()
        if not attempt.future.done():
            attempt.future.set_result(msg)
        return True

    def on_peer_lost(self, peer_id: str, reason: str) -> None:
        """Fail at once every attempt in flight on a peer that is gone."""
        for rid, attempt in list(self._attempts.items()):
            if attempt.peer.peer_id == peer_id:
                self._fail_attempt(rid, "unreachable", f"peer {peer_id[:8]} {reason}")

    def inflight(self) -> int:
        return len(self._attempts)

    # --- choosing ------------------------------------------------------------------------

    def candidates(self, model: str, sha256: str | None, pin: str | None = None) -> list[Peer]:
        """Workers that hold the model; when none does and we hold it, every worker (a worker
        without it fetches it from us, see netcore.models.fetch)."""
        workers = self.peers.workers("infer")
        if self.gate is not None:
            workers = [p for p in workers if self.gate(p) is not None]
        if pin is not None:
            workers = [p for p in workers if p.peer_id == pin]
        found = [p for p in workers if p.has_model(model, sha256)]
        if not found and self.local_model is not None and self.local_model(model, sha256):
            return workers
        return found

    def choose(
        self,
        model: str,
        sha256: str | None,
        exclude: set[str],
        pin: str | None = None,
        avoid: set[str] | frozenset[str] = frozenset(),
        avoid_hosts: set[str] | frozenset[str] = frozenset(),
    ) -> Peer | None:
        """The worker with the least expected wait (netcore.tasks.share); tried ones only as a
        last resort, ``avoid`` ones (and on ``avoid_hosts``) never; None also when all are full."""
        return self._choose(model, sha256, exclude, pin, avoid, avoid_hosts)[0]

    def _choose(
        self,
        model: str,
        sha256: str | None,
        exclude: set[str],
        pin: str | None,
        avoid: set[str] | frozenset[str],
        avoid_hosts: set[str] | frozenset[str] = frozenset(),
    ) -> tuple[Peer | None, bool]:
        """(worker, False), or (None, True) when candidates exist but all are full."""
        found = self.candidates(model, sha256, pin)
        if avoid:
            found = [p for p in found if p.peer_id not in avoid]
        if avoid_hosts:
            found = [p for p in found if self.host(p.peer_id) not in avoid_hosts]
        if not found:
            return None, False
        fresh = [p for p in found if p.peer_id not in exclude] or found
        # Workers that keep failing rest: used only when no other can take the task.
        fresh = [p for p in fresh if not self.rest.resting(p.peer_id)] or fresh
        fresh = [
            p
            for p in fresh
            if p.has_model(model, sha256) or not self.gaps.lacking(p.peer_id, model)
        ] or fresh

        gate = self.gate
        peer = self.share.pick(
            fresh,
            model,
            factor=(lambda p: gate(p) or 1.0) if gate is not None else None,
            probation=self.probation,
            inflight_total=len(self._attempts),
        )
        return peer, peer is None

    def host(self, peer_id: str) -> str:
        """The host ``peer_id`` runs on (its peer id when the transport cannot say)."""
        return self.host_of(peer_id) if self.host_of is not None else peer_id

    # --- submitting ----------------------------------------------------------------------

    async def submit(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        *,
        sha256: str | None = None,
        timeout: float | None = None,
        max_attempts: int | None = None,
        deadline: float | None = None,
        pin: str | None = None,
        allow_local: bool = False,
        task_id: str | None = None,
        exclude: set[str] | None = None,
        exclude_hosts: set[str] | None = None,
    ) -> TaskOutcome:
        """Run one task somewhere and return its outcome (never raises for task failures).

        ``timeout`` is one attempt's budget; ``deadline`` the whole task's (default: enough
        for every attempt plus the wait for a worker). Workers in ``exclude`` are never used,
        and every worker an attempt goes to is added to it: tasks sharing one set run on
        distinct workers (redundant execution, netcore.tasks.verify). ``exclude_hosts`` does
        the same for hosts (:meth:`host`): tasks sharing one set run on distinct hosts.
        """
        loop = asyncio.get_running_loop()
        timeout = timeout or self.default_timeout
        max_attempts = max_attempts or self.max_attempts
        started = time.monotonic()
        deadline_at = started + (deadline or timeout * max_attempts + timeout)
        # A caller may choose the id, to match TaskRetry events to its own record.
        task_id = task_id or protocol.new_id().hex()[:16]
        self.submitted += 1
        spec = self.local_spec(model, sha256) if self.local_spec is not None else None
        try:
            wire_inputs = protocol.tensor_map(inputs)
            if spec is not None:  # we hold the model: we judge the input, not the worker
                spec.check_inputs(inputs)
        except (ValueError, InputMismatch) as exc:
            return self._finish(task_id, model, started, 0, None, error=("bad_input", str(exc)))
        refused: list[str] = []
        tried: set[str] = set()
        attempts = 0
        free_retries = 0
        failures = 0
        # Workers that answered unknown_model to this task: asked again only as a last resort,
        # when no other worker turned up within one attempt's budget.
        lacking: set[str] = set()
        lacking_until = 0.0
        last_error = ("timeout", "no worker with this model answered in time")
        while True:
            if failures and last_error[0] != "unreachable":
                # A pause before each retry (exponential, jittered): a struggling swarm is
                # not hammered. Lost connections skip it: nothing there to wait for.
                await asyncio.sleep(backoff(failures))
            remaining = deadline_at - time.monotonic()
            if attempts >= max_attempts or remaining <= 0:
                return self._finish(task_id, model, started, attempts, None, error=last_error)
            avoid: set[str] | frozenset[str] = exclude or frozenset()
            hosts: set[str] | frozenset[str] = exclude_hosts or frozenset()
            peer, full = self._choose(model, sha256, tried, pin, avoid | lacking, hosts)
            wait = min(remaining, 0.5)
            if peer is None and lacking:
                if time.monotonic() >= lacking_until:
                    peer, full = self._choose(model, sha256, tried, pin, avoid, hosts)
                wait = min(wait, max(0.001, lacking_until - time.monotonic()))
            if peer is None and full:
                await self._slots.wait(wait)
                continue
            if peer is None:
                if allow_local and self.local is not None and pin in (None, self.local_peer_id):
                    return await self._run_local(task_id, model, sha256, inputs, timeout, started)
                await self._waiters.wait(wait)
                continue
            if exclude is not None:
                exclude.add(peer.peer_id)
            if exclude_hosts is not None:
                exclude_hosts.add(self.host(peer.peer_id))
            # From this worker's observed latency for the model, within the caller's budget.
            attempt_timeout = min(
                self.timer.timeout(peer.peer_id, model, timeout, attempts), remaining
            )
            rid = protocol.new_id()
            msg: dict[str, Any] = {
                "t": "task",
                "id": rid,
                "kind": "infer",
                "model": model,
                "inputs": wire_inputs,
                "timeout_ms": max(1, int(attempt_timeout * 1000)),
            }
            if not sha256 and not peer.has_model(model) and self.local_model is not None:
                pinned = self.local_model(model, None)  # the version it will fetch from us
                if pinned:
                    msg["sha256"] = pinned
            if sha256:
                msg["sha256"] = sha256
            advertised = peer.has_model(model, msg.get("sha256"))
            fut: asyncio.Future[dict[str, Any]] = loop.create_future()
            attempt = _Attempt(peer, fut)
            self._attempts[rid] = attempt
            attempts += 1
            peer.inflight += 1
            sent_at = time.monotonic()
            try:
                if not self.send(peer.peer_id, msg):
                    self._fail_attempt(rid, "unreachable", f"cannot send to {peer.peer_id[:8]}")
                else:
                    attempt.timer = loop.call_later(
                        attempt_timeout,
                        self._fail_attempt,
                        rid,
                        "timeout",
                        f"no answer from {peer.peer_id[:8]} within {attempt_timeout:.1f}s",
                    )
                reply = await fut
            except AttemptFailed as exc:
                failures += 1
                peer.tasks_failed += 1
                self._note(peer, "timeout" if exc.code == "timeout" else "unreachable", model)
                tried.add(peer.peer_id)
                last_error = (exc.code, exc.message)
                if exc.code == "timeout":
                    self.send(peer.peer_id, {"t": "cancel", "id": rid})
                self._retry(task_id, peer, exc.message)
                continue
            except asyncio.CancelledError:
                # The caller gave up: forget the attempt and tell the worker.
                abandoned = self._attempts.pop(rid, None)
                if abandoned is not None:
                    if abandoned.timer is not None:
                        abandoned.timer.cancel()
                    self.send(peer.peer_id, {"t": "cancel", "id": rid})
                raise
            finally:
                peer.inflight -= 1
                self._slots.wake_one()
            if reply.get("t") == "result":
                outcome = self._accept_result(
                    task_id, model, started, attempts, peer, reply, inputs,
                    answer_spec(spec, peer, model, msg.get("sha256")),
                )  # fmt: skip
                if isinstance(outcome, TaskOutcome):
                    took = time.monotonic() - sent_at
                    peer.tasks_ok += 1
                    self._note(peer, "ok", model, took)
                    self.timer.observe(peer.peer_id, model, took)
                    peer.observe_rtt(took)
                    return outcome
                failures += 1
                peer.tasks_failed += 1
                self._note(peer, "corrupt" if outcome == "corrupt" else "failed", model)
                tried.add(peer.peer_id)
                why = "a corrupt result" if outcome == "corrupt" else f"a wrong answer ({outcome})"
                last_error = ("internal", f"worker {peer.peer_id[:8]} sent {why}")
                self._retry(task_id, peer, last_error[1])
                continue
            code = str(reply.get("code", "internal"))
            message = str(reply.get("message", ""))
            last_error = (code, f"{peer.peer_id[:8]}: {code}: {message}")
            tried.add(peer.peer_id)
            if code in WORKER_VERDICTS:
                # Valid input (checked before sending): its refusal is its failure.
                refused.append(f"{peer.peer_id[:8]} said {code}: {message[:80]}")
                last_error = (REJECTED, "refused though the input fits: " + "; ".join(refused))
            if code in FREE_RETRY_CODES and free_retries < 1000:
                attempts -= 1
                free_retries += 1
                # Back off a little so an overloaded swarm drains instead of spinning.
                await asyncio.sleep(min(0.05, 0.001 * free_retries))
            elif code == "unknown_model":
                # It lacks the model (and could not fetch it from us): another worker gets the
                # task. One that never advertised it did nothing wrong: neither rested nor
                # reported. The attempt counts, so a worker that lies so cannot loop us.
                failures += 1
                lacking.add(peer.peer_id)
                lacking_until = lacking_until or time.monotonic() + timeout
                if advertised:
                    peer.tasks_failed += 1
                    self._note(peer, "failed", model)
                else:
                    self.gaps.lacks(peer.peer_id, model)
            else:
                failures += 1
                peer.tasks_failed += 1
                self._note(peer, "timeout" if code == "timeout" else "failed", model)
            self._retry(task_id, peer, last_error[1])

    def _note(self, peer: Peer, what: str, model: str = "", took: float | None = None) -> None:
        if model:
            self.share.observe(peer.peer_id, model, took if what == "ok" else None)
        if what == "ok":
            self.rest.succeeded(peer.peer_id)
        else:
            rest = self.rest.failed(peer.peer_id)
            if rest is not None:
                log.info("worker %s failed %s; resting it for %.1fs", peer.peer_id[:8], what, rest)
        if self.observe is not None:
            self.observe(peer, what)

    def _retry(self, task_id: str, peer: Peer, reason: str) -> None:
        self.retries += 1
        self.publish(TaskRetry(task_id=task_id, worker=peer.peer_id, reason=reason))

    def _fail_attempt(self, rid: bytes, code: str, message: str) -> None:
        attempt = self._attempts.pop(rid, None)
        if attempt is None:
            return
        if attempt.timer is not None:
            attempt.timer.cancel()
        if not attempt.future.done():
            attempt.future.set_exception(AttemptFailed(code, message))

    def _accept_result(
        self,
        task_id: str,
        model: str,
        started: float,
        attempts: int,
        peer: Peer,
        reply: dict[str, Any],
        inputs: Mapping[str, np.ndarray],
        spec: ModelSpec | None,
    ) -> TaskOutcome | str:
        """The outcome, or what is wrong with the answer (netcore.tasks.answers)."""
        outputs = decode_answer(reply, inputs, spec)
        if isinstance(outputs, str):
            return outputs
        label_output = next(
            (m.get("label_output") for m in peer.models if m.get("name") == model), None
        )
        return self._finish(
            task_id, model, started, attempts, peer, outputs=outputs,
            took_us=int(reply["took_us"]), digest=reply["digest"], label_output=label_output,
        )  # fmt: skip

    async def _run_local(
        self,
        task_id: str,
        model: str,
        sha256: str | None,
        inputs: Mapping[str, np.ndarray],
        timeout: float,
        started: float,
    ) -> TaskOutcome:
        assert self.local is not None
        try:
            outputs, took_us = await self.local(model, sha256, inputs, timeout)
        except protocol.TaskError as exc:
            return self._finish(
                task_id, model, started, 1, None, error=(exc.code, exc.message), local=True
            )
        wire = protocol.tensor_map(outputs)
        return self._finish(
            task_id,
            model,
            started,
            1,
            None,
            outputs=outputs,
            took_us=took_us,
            digest=protocol.digest_tensors(wire),
            local=True,
        )

    def _finish(
        self,
        task_id: str,
        model: str,
        started: float,
        attempts: int,
        peer: Peer | None,
        *,
        outputs: dict[str, np.ndarray] | None = None,
        error: tuple[str, str] | None = None,
        took_us: int = 0,
        digest: bytes = b"",
        label_output: str | None = None,
        local: bool = False,
    ) -> TaskOutcome:
        worker = self.local_peer_id if local else (peer.peer_id if peer else None)
        outcome, event = finished(
            task_id, model, worker, time.monotonic() - started, attempts, outputs=outputs,
            error=error, took_us=took_us, digest=digest, label_output=label_output,
        )  # fmt: skip
        if outcome.ok:
            self.succeeded += 1
        else:
            self.failed += 1
        self.publish(event)
        return outcome
