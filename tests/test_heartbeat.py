"""A long step without items says it is still working (jobs/progress.heartbeat)."""
import time

from frpose_cli.jobs.progress import heartbeat


def test_a_long_step_says_it_is_still_working_until_it_ends():
    said = []
    with heartbeat(said.append, "measuring X", every=0.05):
        time.sleep(0.28)
    count = len(said)
    time.sleep(0.15)
    assert count >= 3 and len(said) == count   # every 0.05 s inside, nothing after the block
    assert all(line.startswith("measuring X: still working (") and line.endswith(" s)") for line in said)


def test_a_short_step_or_no_listener_says_nothing():
    said = []
    with heartbeat(said.append, "quick", every=5):
        pass
    with heartbeat(None, "with a live bar", every=0.01):
        time.sleep(0.05)
    assert said == []
