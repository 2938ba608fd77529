"""The end of a child process a worker started for a run, a tune run's study or an assist."""

from __future__ import annotations

JOIN_SECONDS = 10


def end_child(child, receiver, *, stop: bool = True) -> bool:
    """Wait for `child` to end and close its pipe `receiver`: with `stop`, a child still alive
    is terminated first (SIGTERM); one still alive JOIN_SECONDS later is killed. Returns
    whether it had to be terminated."""
    terminated = stop and child.is_alive()
    if terminated:
        child.terminate()
    child.join(timeout=JOIN_SECONDS)
    if child.is_alive():
        child.kill()
        child.join()
    receiver.close()
    return terminated
