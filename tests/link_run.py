"""A Link session in a loopback namespace: gridcast following a second peer, measured.

Two programs run inside one namespace from tests/netns.py (never in the machine's own
network namespace, where Link would multicast to the LAN):

- ``peer``: the session's other peer (a DJ's software, say). It opens the session at
  a tempo, changes the tempo at the times given (each time half-way between two
  beats), and reports every beat of its own timeline once the beat has passed: the
  time it computes with its own session state, mapped to CLOCK_REALTIME µs by its
  own paired clock reads. It leaves (disables Link) after ``--seconds``.
- ``follow``: gridcast's LinkBeatSource behind the LiveBeatSender, stepped every
  ``poll`` ms as live mode does; it prints every ``live_beats`` message the devices
  would get and each change of state.

``run_session()`` runs both and ``analyse()`` compares, for each beat of the peer,
the message the devices held ``LEAD_US`` before it with the peer's own time. Used by
tests/test_link_follow.py and bench/link.py.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.netns import in_netns, loopback_netns

ROOT = Path(__file__).resolve().parent.parent
# A prediction counts if gridcast held it this long before the beat: time for the
# live sender's correction to cross a LAN to a device.
LEAD_US = 30_000


def _emit(**record: object) -> None:
    print(json.dumps(record), flush=True)


def _realtime_of(link_micros, link_us: float) -> float:
    """Link instant -> CLOCK_REALTIME µs, with a fresh narrowest-bracket read."""
    best = None
    for _ in range(20):
        before = time.time_ns() / 1000
        now_link = link_micros()
        after = time.time_ns() / 1000
        if best is None or after - before < best[0]:
            best = (after - before, (before + after) / 2 - now_link)
    assert best is not None
    return link_us + best[1]


def run_peer(args: argparse.Namespace) -> None:
    import link

    changes = [(float(at), float(bpm)) for at, bpm in
               (item.split(":") for item in args.tempo_changes.split(",") if item)]
    session_link = link.Link(args.bpm)
    clock = session_link.clock()
    quantum = args.quantum
    session_link.enabled = True
    _emit(kind="peer_up", at_us=time.time_ns() // 1000)
    while session_link.numPeers() == 0:
        time.sleep(0.005)
    joined = time.monotonic()
    state = session_link.captureAppSessionState()
    next_beat = math.ceil(state.beatAtTime(clock.micros(), quantum))
    _emit(kind="peer_joined", at_us=time.time_ns() // 1000)
    while time.monotonic() - joined < args.seconds:
        time.sleep(0.01)
        now_link = clock.micros()
        state = session_link.captureAppSessionState()
        if changes and time.monotonic() - joined >= changes[0][0]:
            beat_now = state.beatAtTime(now_link, quantum)
            if 0.4 <= beat_now - math.floor(beat_now) <= 0.6:  # half-way: next beat well ahead
                bpm = changes.pop(0)[1]
                state.setTempo(bpm, now_link)
                session_link.commitAppSessionState(state)
                _emit(kind="tempo", at_us=round(_realtime_of(clock.micros, now_link)), bpm=bpm)
                continue
        # A beat is reported once it is 20 ms past, from the state of that moment.
        while state.timeAtBeat(next_beat, quantum) < now_link - 20_000:
            at_link = state.timeAtBeat(next_beat, quantum)
            in_bar = round(state.phaseAtTime(at_link, quantum)) % quantum + 1
            _emit(kind="beat", at_us=round(_realtime_of(clock.micros, at_link)),
                  beat_in_bar=in_bar, bpm=state.tempo())
            next_beat += 1
    session_link.enabled = False
    _emit(kind="peer_left", at_us=time.time_ns() // 1000)


class FollowRecorder:
    """gridcast's side of a run: steps the sender and records what happens.

    ``emit(**record)`` writes one record; ``step(now_us)`` returns the update to send
    (or None) after recording it and any change of state.
    """

    def __init__(self, quantum: int, coast_s: float, horizon_ms: float, emit) -> None:
        from gridcast.agent.link_follow import LinkBeatSource
        from gridcast.agent.live_sender import LiveBeatSender

        self.source = LinkBeatSource(beats_per_bar=quantum, coast_s=coast_s)
        self.sender = LiveBeatSender(self.source, horizon_s=horizon_ms / 1000)
        self.emit = emit
        self.state: str | None = None
        self.cpu_start_s, self.wall_start_s = time.process_time(), time.monotonic()
        self.source.start()
        emit(kind="start", at_us=self.source.started_at_us)

    def step(self, now_us: int):
        update = self.sender.step(now_us)
        if self.source.state.value != self.state:
            self.state = self.source.state.value
            self.emit(kind="state", at_us=now_us, state=self.state, bpm=self.source.tempo_bpm)
        if update is not None:
            self.emit(kind="sent", at_us=now_us, reason=update.reason,
                      first_index=update.first_index,
                      beats=[list(b) for b in zip(update.times_us, update.beat_in_bar,
                                                  update.strength, strict=True)])
        return update

    def done(self, peer_seconds: float) -> bool:
        """Idle after the peer's planned end: the peer left and the coast is over."""
        return (self.state == "idle" and self.source.locked_at_us is not None
                and time.monotonic() - self.wall_start_s >= peer_seconds)

    def close(self, now_us: int) -> None:
        clock = self.source.clock_map
        self.emit(kind="end", at_us=now_us, clock_steps=clock.steps if clock else 0,
                  clock_rate_ppm=clock.rate_ppm if clock else 0.0,
                  messages=self.sender.sent_messages, corrections=self.sender.corrections,
                  # Link's own threads included: the whole cost of following the session.
                  cpu_percent=100 * (time.process_time() - self.cpu_start_s)
                  / (time.monotonic() - self.wall_start_s))
        self.source.close()


def run_follow(args: argparse.Namespace) -> None:
    from gridcast.agent.clock import now_us

    recorder = FollowRecorder(args.quantum, args.coast_s, args.horizon_ms, _emit)
    end = time.monotonic() + args.seconds
    while time.monotonic() < end and not recorder.done(args.stop_when_idle_after):
        recorder.step(now_us())
        time.sleep(args.poll_ms / 1000)
    recorder.close(now_us())


@dataclass
class Session:
    """What the two programs reported (one dict per line)."""

    peer: list[dict] = field(default_factory=list)
    follow: list[dict] = field(default_factory=list)


def _command(role: str, *options: str) -> list[str]:
    return [sys.executable, "-m", "tests.link_run", role, *options]


def run_session(seconds: float, bpm: float = 120.0, tempo_changes: str = "",
                quantum: int = 4, coast_s: float = 2.0, poll_ms: int = 10,
                horizon_ms: int = 2000, devices: int = 0, warmup_s: float = 40.0) -> Session:
    """The peer for ``seconds`` (then it leaves), gridcast until it went idle.

    With ``devices``, gridcast's side is tests/link_fleet.py: a broker and that many
    simulated devices in the namespace too, synced for ``warmup_s`` before gridcast
    joins the session; its records then include the devices' LED frames.
    """
    with loopback_netns() as ns, tempfile.TemporaryDirectory() as folder:
        # Both sides write to files, not pipes: nobody reads a pipe during the run, and
        # a full one would stop the writer mid-session.
        peer_out, follow_out = Path(folder) / "peer.jsonl", Path(folder) / "follow.jsonl"
        with open(peer_out, "w") as out:
            peer = subprocess.Popen(
                in_netns(ns, _command("peer", "--seconds", str(seconds), "--bpm", str(bpm),
                                      "--quantum", str(quantum), "--tempo-changes",
                                      tempo_changes)),
                cwd=ROOT, stdout=out, text=True)
        try:
            # The peer is up first, as the DJ's software is before gridcast joins.
            deadline = time.monotonic() + 20.0
            while not peer_out.read_text().strip():
                if peer.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the Link peer did not start")
                time.sleep(0.01)
            common = ["--quantum", str(quantum), "--coast-s", str(coast_s), "--poll-ms",
                      str(poll_ms), "--horizon-ms", str(horizon_ms)]
            timeout_s = seconds + coast_s + 45.0
            if devices:
                argv = [sys.executable, "-m", "tests.link_fleet", "--devices", str(devices),
                        "--warmup-s", str(warmup_s), "--seconds", str(seconds),
                        "--out", str(follow_out), *common]
                timeout_s += warmup_s + 60.0
            else:
                argv = _command("follow", "--seconds", str(seconds + coast_s + 15.0),
                                "--stop-when-idle-after", str(seconds), *common)
            with open(follow_out, "a") as out:
                follow = subprocess.run(in_netns(ns, argv), cwd=ROOT, stdout=out,
                                        stderr=subprocess.PIPE, text=True, timeout=timeout_s)
            peer.wait(timeout=30)
        finally:
            if peer.poll() is None:
                peer.kill()
                peer.wait()
        if follow.returncode != 0:
            raise RuntimeError(f"gridcast's side failed: {follow.stderr.strip()[-2000:]}")
        return Session(peer=_records(peer_out), follow=_records(follow_out))


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def analyse(session: Session, lead_us: int = LEAD_US, tolerance_ms: float = 1.0) -> dict:
    """Figures: beats compared, |error| p50/p99 (ms), join time, tempo-change follow."""
    answers = [r for r in session.follow if r["kind"] == "sent"]
    times = [r["at_us"] for r in answers]
    start = next(r["at_us"] for r in session.follow if r["kind"] == "start")
    peer_beats = [r for r in session.peer if r["kind"] == "beat"]
    errors_ms: list[float] = []
    # (peer beat µs, error ms, bar agrees, beat number the devices got)
    compared: list[tuple[int, float, bool, int]] = []
    for beat in peer_beats:
        i = bisect.bisect_right(times, beat["at_us"] - lead_us) - 1
        if i < 0 or not answers[i]["beats"]:
            continue
        period_us = 60e6 / beat["bpm"]
        held = answers[i]["beats"]
        k = min(range(len(held)), key=lambda j: abs(held[j][0] - beat["at_us"]))
        if abs(held[k][0] - beat["at_us"]) > period_us / 2:
            continue
        error_ms = (held[k][0] - beat["at_us"]) / 1000
        errors_ms.append(abs(error_ms))
        compared.append((beat["at_us"], error_ms, held[k][1] == beat["beat_in_bar"],
                         answers[i]["first_index"] + k))
    first_beat = next((r["beats"][0][0] for r in answers if r["beats"]), None)
    follow = []
    for change in (r for r in session.peer if r["kind"] == "tempo"):
        after = [c for c in compared if c[0] > change["at_us"]]
        off = 0
        for _, error_ms, _, _ in after:
            if abs(error_ms) <= tolerance_ms:
                break
            off += 1
        follow.append(off)
    states = [(r["at_us"], r["state"]) for r in session.follow if r["kind"] == "state"]
    end = next((r for r in session.follow if r["kind"] == "end"), {})
    left = next((r["at_us"] for r in session.peer if r["kind"] == "peer_left"), math.inf)
    return {
        "beats": len(errors_ms),
        "peer_beats": len(peer_beats),
        "p50_abs_ms": round(statistics.median(errors_ms), 4) if errors_ms else None,
        "p99_abs_ms": round(percentile(errors_ms, 99), 4) if errors_ms else None,
        "max_abs_ms": round(max(errors_ms), 4) if errors_ms else None,
        "bar_mismatches": sum(1 for c in compared if not c[2]),
        # Consecutive beats of the peer whose numbers on the devices are not consecutive.
        "numbering_breaks": sum(1 for a, b in itertools.pairwise(compared) if b[3] != a[3] + 1),
        "messages": len(answers),
        "join_s": round((first_beat - start) / 1e6, 3) if first_beat else None,
        "tempo_change_follow_beats": max(follow) if follow else None,
        # Times gridcast lost the session while the peer was still in it.
        "session_losses": sum(1 for at, state in states if state == "coasting" and at < left),
        "follower_cpu_percent": round(end["cpu_percent"], 2) if end else None,
        "states": states,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["peer", "follow"])
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--bpm", type=float, default=120.0)
    parser.add_argument("--quantum", type=int, default=4)
    parser.add_argument("--tempo-changes", default="", help="S:BPM,S:BPM (peer)")
    parser.add_argument("--coast-s", type=float, default=2.0)
    parser.add_argument("--poll-ms", type=float, default=10.0)
    parser.add_argument("--horizon-ms", type=float, default=2000.0)
    parser.add_argument("--stop-when-idle-after", type=float, default=math.inf,
                        help="seconds after which the first idle ends the run (follow)")
    args = parser.parse_args(argv)
    (run_peer if args.role == "peer" else run_follow)(args)


if __name__ == "__main__":
    main()
