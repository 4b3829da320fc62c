"""The open-loop dispatcher: each arrival goes out once, at its time, from the user free last."""

from __future__ import annotations

import time

import gevent

from loadtests.traffic import Dispatcher


def schedule(n: int, gap_s: float, start_s: float = 0.02) -> list[tuple[int, None, None]]:
    t0 = time.time_ns()
    return [(t0 + round((start_s + i * gap_s) * 1e9), None, None) for i in range(n)]


def fresh_loop_clock() -> None:
    """libev caches its clock between loop iterations. In a Locust process the hub always runs,
    but in this pytest process it sits idle while other tests block the thread, so its clock can
    be many seconds stale, and every timeout set from it (``joinall``'s too) fires at once."""
    gevent.get_hub().loop.update_now()


def run_users(
    d: Dispatcher, users: int, work_s: float = 0.0, taken: list[tuple[int, int]] | None = None
) -> list[tuple[int, int, int]]:
    """(user, intended_ns, sent_ns) of everything the users sent, until the schedule is done;
    ``taken`` gets (intended_ns, ns) of the moment the leader took each arrival (``prepare``)."""
    fresh_loop_clock()
    sent: list[tuple[int, int, int]] = []
    took = taken if taken is not None else []

    def user(u: int) -> None:
        while (due := d.next(lambda a: took.append((a[0], time.time_ns())))) is not None:
            sent.append((u, due[0][0], time.time_ns()))
            gevent.sleep(work_s)

    gevent.joinall([gevent.spawn(user, u) for u in range(users)], timeout=10, raise_error=True)
    return sent


def test_every_arrival_once_and_never_early() -> None:
    arrivals = schedule(40, 0.002)
    it = iter(arrivals)
    sent = run_users(Dispatcher(lambda: next(it, None)), users=8, work_s=0.01)
    assert sorted(i for _, i, _ in sent) == [a[0] for a in arrivals]
    assert all(s >= i for _, i, s in sent)


def test_the_user_free_last_sends_next() -> None:
    # sparse arrivals and instant answers: the lead passes before each send, so two users
    # take turns and the other eighteen never wake. An arrival the leader only takes when it is
    # already due (this process was descheduled) goes out at once, before the user that sent the
    # one before it is idle again, so the lead goes to a fresh user: by design, one more user per
    # such arrival (taken less than 1 ms before it was due, to leave room for the hand-over).
    it = iter(schedule(10, 0.01))
    taken: list[tuple[int, int]] = []
    sent = run_users(Dispatcher(lambda: next(it, None)), users=20, taken=taken)
    late = sum(at > due - 1_000_000 for due, at in taken)
    assert len(sent) == 10 and 2 <= len({u for u, _, _ in sent}) <= 2 + late, (late, sent)


def test_busy_users_bring_in_more_users() -> None:
    it = iter(schedule(30, 0.002))
    sent = run_users(Dispatcher(lambda: next(it, None)), users=20, work_s=0.02)
    assert len(sent) == 30 and len({u for u, _, _ in sent}) > 5


def test_stop_sends_nothing_more_and_releases_idle_users() -> None:
    it = iter(schedule(100, 0.01, start_s=0.05))
    d = Dispatcher(lambda: next(it, None))
    sent: list[int] = []

    def user() -> None:
        while (due := d.next(lambda a: None)) is not None:
            sent.append(due[0][0])

    fresh_loop_clock()
    greenlets = [gevent.spawn(user) for _ in range(5)]
    gevent.sleep(0.2)
    d.stop()
    stopped_ns = time.time_ns()
    gevent.joinall(greenlets, timeout=2)
    assert all(g.dead for g in greenlets)
    assert 0 < len(sent) < 100
    assert max(sent) <= stopped_ns  # nothing due after the stop was sent
