"""component.settled: the wait every verify check that may see a just-started service shares."""


def test_a_check_is_given_time_to_settle_and_reports_its_last_problem(monkeypatch):
    from mmdeploy import component

    answers = iter(["storage/storage1 down", "storage/storage1 down", None])
    sleeps: list[float] = []
    monkeypatch.setattr(component.time, "sleep", sleeps.append)
    assert component.settled(lambda: next(answers), wait=60, every=2) is None
    assert sleeps == [2, 2]
    # Never healthy: asked until the wait is over, then its last problem is the answer.
    seen = iter(range(1000))
    clock = iter([0.0, 0.0, 5.0, 11.0])
    monkeypatch.setattr(component.time, "monotonic", lambda: next(clock))
    assert component.settled(lambda: f"down ({next(seen)})", wait=10) == "down (2)"
