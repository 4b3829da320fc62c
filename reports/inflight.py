"""Was an open-loop run held back by its in-flight cap (``--users``)?

An open-loop user takes the next arrival only when its previous request ended, so with every
user busy arrivals wait: the asked rate is not delivered, yet the load generator is not at
fault. The cap was reached when the most requests in flight at once (from each record's send
to its end) equals the users the processes ran (the sum over workers of their largest
``users``); the health check then names the cap instead of the load generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class InFlight:
    peak: int  # the most requests in flight at once
    cap: int  # --users over all processes
    mean_e2e_s: float | None

    @property
    def reached(self) -> bool:
        return self.cap > 0 and self.peak >= self.cap

    def sentence(self, rate: float | None) -> str:
        need = ""
        if rate and self.mean_e2e_s:
            need = (
                f"; rate {rate:.1f}/s × mean E2E {self.mean_e2e_s:.1f} s ≈ "
                f"{rate * self.mean_e2e_s:.0f} would be needed"
            )
        return (
            f"the in-flight cap was reached: all {self.cap} users (--users) were busy at once"
            f"{need}, so arrivals waited for a free user. Raise --users (the load generator "
            f"itself was not the limit)"
        )


def in_flight(rows: pd.DataFrame) -> InFlight:
    start = rows["start_ns"].to_numpy(dtype=np.int64)
    e2e = rows["e2e_ms"].to_numpy(dtype=np.float64)
    keep = ~np.isnan(e2e)
    cap = int(rows.groupby("worker")["users"].max().fillna(0).sum()) if len(rows) else 0
    if not keep.any():
        return InFlight(0, cap, None)
    begin, end = start[keep], start[keep] + (e2e[keep] * 1e6).astype(np.int64)
    # +1 at each send, -1 at each end; an end at the same instant as a send comes first
    times = np.concatenate([begin, end])
    steps = np.concatenate([np.ones(begin.size, np.int64), -np.ones(end.size, np.int64)])
    order = np.lexsort((steps, times))
    peak = int(np.cumsum(steps[order]).max())
    return InFlight(peak, cap, float(e2e[keep].mean()) / 1e3)
