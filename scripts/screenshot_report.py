"""Render the demo report in headless Chromium and check that it shows its plots.

    .venv/bin/python scripts/screenshot_report.py [REPORT.html] [--out report.png] [--chromium PATH]

REPORT defaults to the newest demo run's report (`$MLOPS_STATE_DIR` or `.mlops/`, then
`demo/latest/report.html`). Steps:

1. the page is self-contained: no `src`/`href` pointing at http(s) or protocol-relative URLs, no
   `<script>`, no `@import`/`url(http...)` in CSS;
2. Chromium renders it offline (`--headless --no-sandbox --disable-gpu --screenshot=...`, full page
   height, network disabled by a proxy that does not exist);
3. the screenshot is not blank: enough non-white pixels, and pixels in the plot colours (the timeline
   and PSI bars, the PNG evaluation plots).

Exit 0 when all hold, 1 when a check fails, 2 when Chromium or the report is missing.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "/usr/bin/chromium")
NETWORK = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|@import|url\(\s*["']?(?:https?:)?//|<script""",
                     re.IGNORECASE)
PLOT_BLUE = (0x3B, 0x6E, 0xA8)  # mlops/report.py COLORS[0]: timeline, PSI and latency bars


def default_report() -> Path:
    state = Path(os.environ.get("MLOPS_STATE_DIR") or REPO_ROOT / ".mlops")
    return state / "demo" / "latest" / "report.html"


def find_chromium(explicit: str | None) -> str | None:
    for name in ([explicit] if explicit else CANDIDATES):
        found = shutil.which(name) if name else None
        if found:
            return found
    return None


def network_references(html: str) -> list[str]:
    return [html[max(0, m.start() - 30) : m.end() + 30] for m in NETWORK.finditer(html)]


def page_height(html: str) -> int:
    """A generous screenshot height: Chromium's --screenshot captures the window, not the full page."""
    return min(30000, 2000 + 12 * html.count("<tr") + 420 * html.count("<figure") + 200 * html.count("<h3"))


def check_pixels(png: Path) -> tuple[float, int]:
    """(share of non-white pixels, pixels close to the plot blue)."""
    import matplotlib.image as mpimg
    import numpy as np

    image = mpimg.imread(str(png))[..., :3]
    if image.dtype != np.uint8:
        image = (image * 255).round().astype(np.uint8)
    non_white = float((image.min(axis=2) < 235).mean())
    blue = int((np.abs(image.astype(int) - np.array(PLOT_BLUE)).max(axis=2) <= 12).sum())
    return non_white, blue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("report", nargs="?", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="PNG to write (default: next to the report)")
    parser.add_argument("--chromium", default=None, help="Chromium binary (default: first of " + ", ".join(CANDIDATES))
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args(argv)

    report = (args.report or default_report()).resolve()
    if not report.is_file():
        print(f"error: no report at {report}: run `make run` (or `mlops demo`) first", file=sys.stderr)
        return 2
    html = report.read_text(encoding="utf-8")
    references = network_references(html)
    if references:
        print(f"FAIL {report} is not self-contained: {references[:3]}", file=sys.stderr)
        return 1
    chromium = find_chromium(args.chromium)
    if chromium is None:
        print(f"error: no Chromium found (tried {', '.join(CANDIDATES)}); install it, e.g. `apt-get install chromium`",
              file=sys.stderr)
        return 2
    out = (args.out or report.with_suffix(".png")).resolve()
    height = page_height(html)
    with tempfile.TemporaryDirectory(prefix="report-chromium-") as profile:
        command = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
            f"--window-size={args.width},{height}", f"--screenshot={out}", report.as_uri(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0 or not out.is_file():
        print(f"FAIL chromium exited {done.returncode}: {done.stderr.strip()[-800:]}", file=sys.stderr)
        return 1
    non_white, blue = check_pixels(out)
    print(f"screenshot {out} ({args.width}x{height}): {non_white:.1%} non-white pixels, {blue} plot-blue pixels")
    if non_white < 0.02 or blue < 500:
        print("FAIL the page looks blank or its plots did not render", file=sys.stderr)
        return 1
    print("OK the report renders in headless Chromium with its plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
