"""The relay's counters, rendered in the Prometheus text format (no client library needed).

Everything is a plain attribute or dict bumped in place: no locks (one event loop per process),
nothing allocated per chunk. Metrics are per process; with several relay processes, scrape each.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable

# Upper bounds (seconds) of the time-to-first-upstream-byte histogram.
TTFB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()  # by (route, response status)
        self.active_streams = 0
        self.rate_limited = 0
        self.ratelimit_backend_errors = 0
        self.upstream_errors: Counter[str] = Counter()  # by kind
        self.upstream_retries = 0
        self.client_disconnects = 0
        self.tokens: Counter[tuple[str, str]] = Counter()  # (principal id, prompt|completion)
        self._ttfb_counts = [0] * (len(TTFB_BUCKETS) + 1)
        self._ttfb_sum = 0.0
        self.pool_state: Callable[[], dict[str, int]] = dict

    def observe_ttfb(self, seconds: float) -> None:
        self._ttfb_counts[bisect.bisect_left(TTFB_BUCKETS, seconds)] += 1
        self._ttfb_sum += seconds

    def add_usage(self, principal_id: str, usage: object) -> None:
        if not isinstance(usage, dict):
            return
        for kind in ("prompt_tokens", "completion_tokens"):
            value = usage.get(kind)
            if isinstance(value, int) and value >= 0:
                self.tokens[(principal_id, kind.removesuffix("_tokens"))] += value

    def render(self) -> bytes:
        out: list[str] = []

        def family(name: str, kind: str, help_: str) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")

        family("relay_requests_total", "counter", "Finished requests by route and status.")
        for (route, status), count in sorted(self.requests.items()):
            out.append(f'relay_requests_total{{route="{route}",status="{status}"}} {count}')
        family("relay_active_streams", "gauge", "Requests being relayed right now.")
        out.append(f"relay_active_streams {self.active_streams}")
        family(
            "relay_upstream_first_byte_seconds",
            "histogram",
            "Time from sending a request upstream to its first response body byte.",
        )
        cumulative = 0
        for bound, count in zip(TTFB_BUCKETS, self._ttfb_counts, strict=False):
            cumulative += count
            out.append(f'relay_upstream_first_byte_seconds_bucket{{le="{bound}"}} {cumulative}')
        cumulative += self._ttfb_counts[-1]
        out.append(f'relay_upstream_first_byte_seconds_bucket{{le="+Inf"}} {cumulative}')
        out.append(f"relay_upstream_first_byte_seconds_sum {self._ttfb_sum:.6f}")
        out.append(f"relay_upstream_first_byte_seconds_count {cumulative}")
        family("relay_rate_limited_total", "counter", "Requests refused with 429 by a plan limit.")
        out.append(f"relay_rate_limited_total {self.rate_limited}")
        family(
            "relay_ratelimit_backend_errors_total",
            "counter",
            "Rate-limit checks that could not reach the backend (fail-open/closed applied).",
        )
        out.append(f"relay_ratelimit_backend_errors_total {self.ratelimit_backend_errors}")
        family("relay_upstream_errors_total", "counter", "Upstream failures by kind.")
        for kind, count in sorted(self.upstream_errors.items()):
            out.append(f'relay_upstream_errors_total{{kind="{kind}"}} {count}')
        family("relay_upstream_retries_total", "counter", "Upstream attempts that were retried.")
        out.append(f"relay_upstream_retries_total {self.upstream_retries}")
        family("relay_client_disconnects_total", "counter", "Clients gone before the end.")
        out.append(f"relay_client_disconnects_total {self.client_disconnects}")
        family("relay_tokens_total", "counter", "Tokens reported by upstream usage, per principal.")
        for (principal, kind), count in sorted(self.tokens.items()):
            principal = principal.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            out.append(f'relay_tokens_total{{principal="{principal}",kind="{kind}"}} {count}')
        family("relay_upstream_pool_connections", "gauge", "Upstream pool connections by state.")
        for state, count in sorted(self.pool_state().items()):
            out.append(f'relay_upstream_pool_connections{{state="{state}"}} {count}')
        return ("\n".join(out) + "\n").encode()
