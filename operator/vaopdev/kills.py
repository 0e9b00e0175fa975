"""SIGKILLs of the operator under test (or under a benchmark), at random moments while it works."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from .environment import OperatorProcess


class Killer:
    """SIGKILLs the operator at random moments and starts it again."""

    def __init__(self, operator: OperatorProcess, seed: int) -> None:
        self.operator = operator
        self.rng = random.Random(seed)  # noqa: S311 (moments to kill at, not keys)

    def kill_during(
        self,
        times: int,
        pending: Callable[[], int],
        *,
        each: Callable[[int], object] = lambda _: None,
        pause: tuple[float, float] = (0.1, 1.5),
    ) -> int:
        """Kill ``times`` times, ``pause`` seconds apart, while work goes on (``each(i)`` starts more
        before kill i); how many kills found ``pending()`` work left."""
        in_flight = 0
        for i in range(times):
            each(i)
            time.sleep(self.rng.uniform(*pause))
            in_flight += pending() > 0
            self.operator.kill()
            self.operator.start(data_api=False)  # to kill it again at once, served or not
        return in_flight
