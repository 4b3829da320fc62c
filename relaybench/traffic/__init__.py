"""Real traffic: trace replay (``trace``), chat sessions (``sessions``), client retries (``retry``).

Pure, I/O-free logic shared by the run command (validation before anything starts) and the load
generator (``loadtests``, inside Locust). Nothing here imports Locust or gevent.
"""
