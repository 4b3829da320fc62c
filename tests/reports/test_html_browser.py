"""report.html opened in real headless Chromium: every image decodes, nothing leaves the file."""

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from reports.pipeline import rebuild

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]  # fmt: skip

# Appended to a copy of the report (the report itself carries no script): after load, list
# each <img>'s state and every resource the page fetched into a <pre> that --dump-dom prints.
PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => ({src: i.src.slice(0, 22), complete: i.complete,
    width: i.naturalWidth}));
  const fetched = performance.getEntriesByType('resource').map(e => e.name);
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify({imgs, fetched});
  document.body.appendChild(pre);
});
</script>"""


class _Urls(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.urls += [v for k, v in attrs if k in ("src", "href", "srcset", "poster") and v]


pytestmark = pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium")


def test_report_renders_offline_with_every_image_loaded(step_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(step_run, run)
    rebuild(run)
    html = (run / "report.html").read_text()
    parser = _Urls()
    parser.feed(html)
    assert parser.urls and all(u.startswith("data:image/png;base64,") for u in parser.urls)
    assert not re.search(r"url\(\s*['\"]?(?!data:)", html)  # no CSS fetches either
    page = tmp_path / "probe.html"
    page.write_text(html.replace("</body>", PROBE + "</body>"))
    profile = tmp_path / "profile"
    out = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    match = re.search(r'<pre id="probe">(.*?)</pre>', out.stdout, re.S)
    assert match, out.stderr[-2000:]
    probe = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert len(probe["imgs"]) == 7
    for img in probe["imgs"]:
        assert img["src"].startswith("data:image/png")
        assert img["complete"] and img["width"] > 400, img
    assert all(name.startswith("data:") for name in probe["fetched"]), probe["fetched"]
