"""The server view: what the servers did while a run measured them (issue 15).

During a run a ``Scraper`` (``scraper.py``) polls every source once a second on its own thread:
Prometheus text endpoints (``prom.py``), the mock's ``/mock/stats`` JSON (``mockstats.py``),
processes by PID (``process.py``) and a Redis (``redisprobe.py``), HTTP fetched with a bounded
deadline (``fetch.py``). Each sample,
or a gap when a poll failed, is appended to ``server/<source>.jsonl`` in the run folder as it
comes (``samples.py`` reads them back); ``usage.py`` turns a target's window of samples into
the ``server`` block of ``summary.json``.
"""
