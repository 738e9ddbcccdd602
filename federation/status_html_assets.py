"""The HTML view's inline style and script (federation/status_html.py), and the script's CSP hash.

No external assets: the page must work from a file, from an agent behind an allowlist, and offline. The
script only says how old the observation is in the browser's clock and marks the page ready; the page
refreshes itself with a meta refresh, so it works with scripts off too.
"""

from __future__ import annotations

import base64
import hashlib

REFRESH_SECONDS = 5

STYLE = """
:root { color-scheme: light; --ok: #1b6e20; --bad: #b00020; --warn: #8a5a00; --line: #c8ccd2; --muted: #555; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; padding: 1rem 1.5rem;
       max-width: 1400px; color: #111; background: #f6f7f9; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; } h2 { font-size: 1.15rem; margin: 1.25rem 0 .5rem; }
.verdict { font-weight: 600; } .verdict.ok { color: var(--ok); } .verdict.bad { color: var(--bad); }
.muted { color: var(--muted); }
.problems { border: 2px solid var(--bad); background: #fff0f2; padding: .5rem 1rem; border-radius: 6px; }
.problems h2 { color: var(--bad); margin-top: .25rem; } .problems li { margin: .2rem 0; overflow-wrap: anywhere; }
.no-problems { border: 1px solid var(--ok); background: #effaf0; padding: .5rem 1rem; border-radius: 6px; }
.tier { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; margin-bottom: .5rem; }
.tier[data-depth="1"] { margin-left: 2rem; } .tier[data-depth="2"] { margin-left: 4rem; }
.tier[data-depth="3"] { margin-left: 6rem; }
.tier[data-depth="unplaced"] { border-top: 1px dashed var(--line); padding-top: .5rem; }
.dc { background: #fff; border: 1px solid var(--line); border-left: 6px solid var(--muted); border-radius: 6px;
      padding: .5rem .75rem; min-width: 26rem; flex: 0 1 auto; }
.dc[data-role="primary"] { border-left-color: var(--ok); } .dc[data-role="standby"] { border-left-color: #2a5db0; }
.dc[data-healthy="false"] { outline: 2px solid var(--bad); }
.dc h3 { margin: 0; font-size: 1.05rem; }
.dc .dc-role { font-weight: 600; text-transform: uppercase; font-size: .8rem; }
.link { display: flex; align-items: center; gap: .5rem; margin: .25rem 0 .4rem; }
.arrow { flex: none; } .sparkline { flex: none; background: #f0f3f8; border-radius: 3px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .2rem .45rem; border-bottom: 1px solid #e3e5e8; vertical-align: top; }
th { font-size: .8rem; color: var(--muted); font-weight: 600; }
tbody th { font-size: inherit; color: inherit; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.unhealthy td { color: var(--bad); } .status-bad { color: var(--bad); font-weight: 600; }
.status-ok { color: var(--ok); }
.panel { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: .5rem .75rem; }
.plan li[aria-current="step"] { font-weight: 700; }
.columns { display: grid; grid-template-columns: repeat(auto-fit, minmax(28rem, 1fr)); gap: 1rem; }
code { font-size: .9em; }
"""

SCRIPT = """(function () {
  var body = document.body, age = document.getElementById("age");
  var observed = Date.parse(body.getAttribute("data-observed-at") || "");
  if (age && !isNaN(observed)) {
    age.textContent = "(" + Math.max(0, Math.round((Date.now() - observed) / 1000)) + " s ago, this browser's clock)";
  }
  body.setAttribute("data-view-ready", "yes");
})();"""

SCRIPT_HASH = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
# Nothing loads from elsewhere, and only the script above runs: a name that slipped past escaping could not run.
CONTENT_SECURITY_POLICY = (f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{SCRIPT_HASH}'; "
                           "img-src data:; base-uri 'none'; form-action 'none'")
