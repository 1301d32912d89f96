"""How simulated beats are judged (led_report.timing_problems): the aim against the bound,
and the beats the host held up, apart."""

from __future__ import annotations

from gridcast.agent.simulation.led_report import timing_problems


def _beats(n: int, error_us: int = 100, delay_us: int = 30) -> tuple[list[int], list[int]]:
    return [error_us] * n, [delay_us] * n


def test_a_few_beats_held_up_by_the_host_pass_on_their_aim() -> None:
    errors, delays = _beats(100)
    for k in (10, 50, 90):  # three stalls of 3-40 ms: the whole error is the delay
        errors[k] += 3_000 + 10_000 * (k == 50) * 3
        delays[k] += 3_000 + 10_000 * (k == 50) * 3
    assert timing_problems(errors, delays, 1.0) == []


def test_an_aim_off_fails_whatever_the_delays() -> None:
    errors, delays = _beats(100)
    errors[3:6] = [1_400, -1_300, 1_200]  # the device aimed these 1.2-1.4 ms off
    problems = timing_problems(errors, delays, 1.0)
    assert len(problems) == 1 and problems[0].startswith("aim p99 1.")


def test_many_beats_held_up_fail() -> None:
    errors, delays = _beats(100)
    for k in range(0, 100, 10):  # every tenth beat late by 2 ms (say a flush in the spin)
        errors[k] += 2_000
        delays[k] += 2_000
    assert timing_problems(errors, delays, 1.0) == [
        "10 of 100 beats held up over 1 ms (at most 5%)"]


def test_every_beat_a_little_late_fails_on_the_median() -> None:
    errors, delays = _beats(100, error_us=450, delay_us=400)
    assert timing_problems(errors, delays, 1.0) == ["median delay 0.400 ms over 0.2 ms"]


def test_beats_without_a_logged_delay_cannot_be_judged() -> None:
    errors, _ = _beats(10)
    problems = timing_problems(errors, [None] * 10, 1.0)
    assert problems and "late_us" in problems[0]
    assert timing_problems([], [], 1.0) == ["no beats to judge"]
