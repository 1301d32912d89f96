"""The Ableton Link beat source: clock map and states on fakes, then a real session.

The session tests run two real Link peers (gridcast's LinkBeatSource and a second
peer that changes tempo and then leaves) inside a network namespace that has only a
loopback interface (tests/netns.py): Link multicasts on every interface, and must
never do so from this machine's own namespace. This process never enables Link.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from gridcast.agent.link_clock import LinkClockMap, paired_read
from gridcast.agent.link_follow import LinkBeatSource, LinkError
from gridcast.agent.live_beat_source import SourceState
from tests.link_run import analyse, run_session
from tests.netns import PREFIX, NetnsError, check_isolated, in_netns, loopback_netns, remove_stale

EPOCH_US = 1_790_000_000_000_000  # an agent instant in 2026


class FakeClocks:
    """A Link clock and an agent clock running at a rate against it, advanced by hand."""

    def __init__(self, rate_ppm: float = 0.0, offset_us: float = EPOCH_US) -> None:
        self.link_us = 1_000_000.0
        self.rate = rate_ppm * 1e-6
        self.offset_us = offset_us

    def micros(self) -> int:
        return round(self.link_us)

    def agent(self) -> int:
        return round(self.offset_us + self.link_us * (1 + self.rate))

    def advance(self, us: float) -> None:
        self.link_us += us


class FakeSession:
    """Link's session state for a constant tempo: beat 0 at ``origin_us`` (Link µs)."""

    def __init__(self, bpm: float, origin_us: float) -> None:
        self.bpm, self.origin_us = bpm, origin_us
        self.playing, self.play_from_us = True, 0

    def isPlaying(self) -> bool:
        return self.playing

    def timeForIsPlaying(self) -> int:
        return self.play_from_us

    def tempo(self) -> float:
        return self.bpm

    def beatAtTime(self, t: int, quantum: float) -> float:
        return (t - self.origin_us) * self.bpm / 60e6

    def phaseAtTime(self, t: int, quantum: float) -> float:
        return self.beatAtTime(t, quantum) % quantum

    def timeAtBeat(self, beat: float, quantum: float) -> int:
        return round(self.origin_us + beat * 60e6 / self.bpm)


class FakeLink:
    def __init__(self, clocks: FakeClocks, session: FakeSession) -> None:
        self.enabled = False
        self.peers = 0
        self.clocks, self.session = clocks, session

    def clock(self) -> FakeClocks:
        return self.clocks

    def numPeers(self) -> int:
        return self.peers

    def captureAppSessionState(self) -> FakeSession:
        return self.session


def fake_source(bpm: float = 120.0, quantum: int = 4, coast_s: float = 2.0,
                rate_ppm: float = 0.0, follow_transport: bool = False,
                ) -> tuple[LinkBeatSource, FakeLink]:
    clocks = FakeClocks(rate_ppm)
    fake = FakeLink(clocks, FakeSession(bpm, origin_us=0.0))
    source = LinkBeatSource(quantum, coast_s=coast_s, follow_transport=follow_transport,
                            link_factory=lambda _bpm: fake, now_us=clocks.agent)
    return source.start(), fake


# -- the clock map ---------------------------------------------------------------------

def test_clock_map_recovers_offset_and_rate() -> None:
    clocks = FakeClocks(rate_ppm=80.0)
    clock = LinkClockMap(clocks.micros, clocks.agent, interval_us=250_000)
    for _ in range(40):
        clocks.advance(250_000)
        clock.update()
    assert clock.rate_ppm == pytest.approx(80.0, abs=1.0)
    ahead = clocks.link_us + 2_000_000  # a beat 2 s ahead
    assert clock.to_agent_us(ahead) == pytest.approx(EPOCH_US + ahead * (1 + 80e-6), abs=2)
    assert clock.to_link_us(clock.to_agent_us(ahead)) == pytest.approx(ahead, abs=0.01)


def test_clock_map_follows_a_realtime_step_at_once() -> None:
    clocks = FakeClocks()
    clock = LinkClockMap(clocks.micros, clocks.agent)
    for _ in range(8):
        clocks.advance(250_000)
        clock.update()
    clocks.offset_us += 1_500_000  # the operator sets the clock 1.5 s forward
    clocks.advance(250_000)
    assert clock.update()
    assert clock.steps == 1
    assert clock.to_agent_us(clocks.link_us) == pytest.approx(clocks.agent(), abs=2)


def test_paired_read_keeps_the_narrowest_bracket() -> None:
    agent_reads = iter([0, 900, 1000, 1003, 2000, 2400])  # brackets 900, 3, 400 µs
    link_reads = iter([10, 20, 30])
    pair = paired_read(lambda: next(link_reads), lambda: next(agent_reads), tries=3)
    assert (pair.link_us, pair.agent_us, pair.bracket_us) == (20, 1001.5, 3)


# -- states, beats and bars on a fake Link -----------------------------------------------

def test_idle_until_a_peer_then_beats_with_bars_from_the_quantum() -> None:
    source, fake = fake_source(bpm=120.0, quantum=3)
    now = fake.clocks.agent()
    assert source.upcoming(now, 2_000_000) == []
    assert source.state is SourceState.IDLE
    fake.peers = 1
    beats = source.upcoming(now, 2_000_000)
    assert source.state is SourceState.LOCKED and source.tempo_bpm == 120.0
    # Link time 1 s is beat 2 at 120 bpm: beats 2..5 fall at 1.0, 1.5, 2.0, 2.5 s.
    assert [b.at_us - EPOCH_US for b in beats] == [1_000_000, 1_500_000, 2_000_000, 2_500_000]
    assert [b.beat_in_bar for b in beats] == [3, 1, 2, 3]  # phase 2 of a 3-beat bar first
    assert [b.strength for b in beats] == [0.5, 1.0, 0.5, 0.5]
    assert all(b.confidence == 1.0 for b in beats)


def test_a_tempo_change_shows_in_the_next_answer() -> None:
    source, fake = fake_source(bpm=120.0)
    fake.peers = 1
    source.upcoming(fake.clocks.agent(), 1_000_000)
    fake.session = FakeSession(140.0, origin_us=fake.session.origin_us)
    beats = source.upcoming(fake.clocks.agent(), 1_000_000)
    assert source.tempo_bpm == 140.0
    assert beats[1].at_us - beats[0].at_us == pytest.approx(60e6 / 140, abs=1)


def test_session_gone_coasts_with_falling_confidence_then_idles() -> None:
    source, fake = fake_source(bpm=120.0, coast_s=2.0)
    fake.peers = 1
    source.upcoming(fake.clocks.agent(), 1_000_000)
    fake.peers = 0
    lost = fake.clocks.agent()
    beats = source.upcoming(lost, 5_000_000)
    assert source.state is SourceState.COASTING
    assert beats and all(b.at_us < lost + 2_000_000 for b in beats)  # none past the coast
    confidences = [b.confidence for b in beats]
    assert confidences == sorted(confidences, reverse=True) and confidences[-1] < 0.3
    fake.clocks.advance(2_000_001)
    assert source.upcoming(fake.clocks.agent(), 5_000_000) == []
    assert source.state is SourceState.IDLE
    fake.peers = 2  # a peer is back
    assert source.upcoming(fake.clocks.agent(), 1_000_000)
    assert source.state is SourceState.LOCKED


def test_following_the_transport_gives_beats_only_while_it_plays() -> None:
    source, fake = fake_source(follow_transport=True)
    assert fake.startStopSyncEnabled
    fake.peers = 1
    fake.session.playing = False  # the DJ pressed stop
    assert source.upcoming(fake.clocks.agent(), 2_000_000) == []
    assert source.state is SourceState.IDLE
    fake.session.playing, fake.session.play_from_us = True, 2_000_000  # starts on the bar
    beats = source.upcoming(fake.clocks.agent(), 2_000_000)
    assert source.state is SourceState.LOCKED
    assert [b.at_us - EPOCH_US for b in beats] == [2_000_000, 2_500_000]
    assert beats[0].beat_in_bar == 1


def test_closing_makes_the_source_idle() -> None:
    source, fake = fake_source()
    fake.peers = 1
    source.close()
    assert not fake.enabled
    assert source.upcoming(fake.clocks.agent(), 1_000_000) == []
    assert source.state is SourceState.IDLE


@pytest.mark.parametrize("quantum", [0, 17, 4.5])
def test_a_bar_length_link_cannot_share_is_refused(quantum: object) -> None:
    with pytest.raises(LinkError, match="beats per bar"):
        LinkBeatSource(quantum)  # type: ignore[arg-type]


def test_missing_link_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "link", None)  # import link -> ImportError
    with pytest.raises(LinkError, match="pip install linkpython-extern"):
        LinkBeatSource().start()


# -- the namespace the Link peers run in --------------------------------------------------

def _namespaces() -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in listing.splitlines() if line.strip()]


def test_the_namespace_holds_only_loopback_and_goes_away() -> None:
    with loopback_netns() as ns:
        assert ns in _namespaces()
        addresses = subprocess.run(in_netns(ns, ["ip", "-o", "addr", "show"]),
                                   capture_output=True, text=True, check=True).stdout
        assert {line.split()[1] for line in addresses.splitlines()} == {"lo"}
    assert ns not in _namespaces()


def test_a_namespace_with_another_interface_is_refused() -> None:
    with loopback_netns() as ns:
        # A veth pair with both ends inside the namespace: it reaches nothing outside.
        subprocess.run(["ip", "-n", ns, "link", "add", "gc-a", "type", "veth", "peer", "name",
                        "gc-b"], check=True)
        with pytest.raises(NetnsError, match="expected only lo"):
            check_isolated(ns)


def test_namespaces_left_by_a_killed_run_are_removed() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid is free now: the run that named the namespace is dead
    stale = f"{PREFIX}-{gone.pid}-deadbeef"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    remove_stale()
    assert stale not in _namespaces()


# -- a real session with a second peer, in a loopback-only namespace --------------------

SESSION_S = 20.0
TEMPO_CHANGE_S = 10.0
COAST_S = 2.0


@pytest.fixture(scope="module")
def session() -> dict:
    run = run_session(SESSION_S, bpm=120.0, tempo_changes=f"{TEMPO_CHANGE_S}:131",
                      coast_s=COAST_S)
    return {"run": run, "figures": analyse(run)}


def test_joining_takes_at_most_two_seconds_to_the_first_beat(session: dict) -> None:
    assert session["figures"]["join_s"] is not None
    assert session["figures"]["join_s"] <= 2.0


def test_predicted_beats_match_the_peers_beats_within_a_millisecond(session: dict) -> None:
    figures = session["figures"]
    # 20 s at 120 then 131 bpm is about 42 beats; all but the first are compared.
    assert figures["beats"] >= 0.9 * figures["peer_beats"] and figures["beats"] >= 35
    assert figures["p99_abs_ms"] <= 1.0
    assert figures["bar_mismatches"] == 0
    assert figures["numbering_breaks"] == 0
    assert figures["session_losses"] == 0


def test_the_devices_get_refills_and_corrections_not_a_flood(session: dict) -> None:
    sent = [r for r in session["run"].follow if r["kind"] == "sent"]
    reasons = [r["reason"] for r in sent]
    assert reasons[0] == "first"
    assert reasons.count("correction") >= 2  # the tempo change, the session lost
    assert len(sent) <= 2 * SESSION_S + 10  # about one refill a second


def test_a_tempo_change_is_followed_from_the_next_beat(session: dict) -> None:
    run = session["run"]
    assert [r["bpm"] for r in run.peer if r["kind"] == "tempo"] == [131.0]
    assert session["figures"]["tempo_change_follow_beats"] == 0
    change_us = next(r["at_us"] for r in run.peer if r["kind"] == "tempo")
    answer = next(r for r in run.follow if r["kind"] == "sent"
                  and r["at_us"] > change_us and len(r["beats"]) >= 2)
    assert answer["reason"] == "correction" and answer["at_us"] - change_us < 200_000
    spacing_us = answer["beats"][1][0] - answer["beats"][0][0]
    assert spacing_us == pytest.approx(60e6 / 131, abs=50)


def test_the_peer_leaving_makes_gridcast_coast_then_idle(session: dict) -> None:
    run = session["run"]
    left_us = next(r["at_us"] for r in run.peer if r["kind"] == "peer_left")
    states = [(at, state) for at, state in session["figures"]["states"]]
    assert [s for _, s in states] == ["idle", "locked", "coasting", "idle"]
    coast_start, idle_start = states[2][0], states[3][0]
    assert 0 <= coast_start - left_us <= 1_000_000  # Link says goodbye to its peers
    assert idle_start - coast_start == pytest.approx(COAST_S * 1e6, abs=200_000)
    coasting = [r for r in run.follow if r["kind"] == "sent"
                and coast_start <= r["at_us"] < idle_start and r["beats"]]
    # The devices' flashes fade over the coast: strength x confidence, relative to the
    # locked accents (255 on the one, 128 on the others).
    fading = [strength / (255 if in_bar == 1 else 128) for _, in_bar, strength in
              coasting[0]["beats"]]
    assert fading == sorted(fading, reverse=True) and fading[0] < 1.0 and fading[-1] < 0.3
    assert all(at < coast_start + COAST_S * 1e6 for at, _, _ in coasting[0]["beats"])
