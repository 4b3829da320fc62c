"""``relaybench faults``: the fault scorecard (how honestly does a relay fail?).

scenarios.py   the suite as data: each scenario's requests, measure and judgement
client.py      one request, and a faithful record of what the client saw
mocklog.py     the mock's per-request log: what reached the upstream, and when it ended
wire.py        a scripted upstream for exact wire formats (1 MiB event, CRLF, split UTF-8)
servers.py     the mock and relays the harness starts itself
runner.py      runs the suite (and the optional background load)
scorecard.py   totals, and faults.json / .md / .html / -junit.xml
cli.py         the command
"""
