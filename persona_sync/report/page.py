"""The HTML page's own parts: inline CSS, the list script, and a policy that forbids the
network (templates/base.html puts them together).

A report must open from a ticket attachment or a USB stick with nothing else: one file,
no external scripts, styles, fonts or images. The Content-Security-Policy allows only
this page's own style and script (by hash), so even a crafted employee name cannot make
the browser load or run anything.
"""

from __future__ import annotations

import base64
import hashlib

STYLE = """
:root{--fg:#111827;--muted:#6b7280;--line:#e5e7eb;--bg:#fff;--accent:#2563eb}
*{box-sizing:border-box}
body{margin:0;color:var(--fg);background:var(--bg);
  font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{padding:20px 28px 12px;border-bottom:1px solid var(--line)}
header h1{margin:0 0 4px;font-size:22px}
header p{margin:2px 0;color:var(--muted)}
nav{padding:8px 28px;border-bottom:1px solid var(--line);position:sticky;top:0;
  background:var(--bg);z-index:2}
nav a{margin-right:16px;color:var(--accent);text-decoration:none}
main{padding:8px 28px 40px;max-width:1400px}
section{margin:22px 0 30px}
h2{font-size:18px;margin:0 0 10px;border-bottom:1px solid var(--line);padding-bottom:4px}
h3{font-size:15px;margin:18px 0 8px}
.note{color:var(--muted);margin:6px 0}
.warn{background:#fef3c7;border:1px solid #f59e0b;padding:6px 10px;border-radius:4px}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:8px 0}
dl.meta dt{color:var(--muted)}
dl.meta dd{margin:0;word-break:break-all;
  font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:10px 0}
.card{border:1px solid var(--line);border-radius:6px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:20px}
.card span{color:var(--muted)}
table{border-collapse:collapse;margin:6px 0}
th,td{border:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f9fafb;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto;max-width:100%}
svg.chart{max-width:100%;height:auto;font-size:12px}
svg.chart text{fill:#374151}
svg.chart text.on-colour{fill:#fff;font-weight:600}
svg.chart .grid{stroke:#e5e7eb}
.heat-0{background:#fff}.heat-1{background:#eff6ff}.heat-2{background:#dbeafe}
.heat-3{background:#bfdbfe}.heat-4{background:#93c5fd}.heat-5{background:#60a5fa}
.heat-6{background:#3b82f6;color:#fff}.heat-7{background:#2563eb;color:#fff}
.heat-8{background:#1d4ed8;color:#fff}.heat-9{background:#1e3a8a;color:#fff}
td.cell button{all:unset;cursor:pointer;display:block;text-align:right;min-width:2em}
td.cell button:focus{outline:2px solid #f59e0b}
.controls{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin:8px 0}
.controls input[type=search]{min-width:280px;padding:4px 8px}
.controls select,.controls button{padding:3px 6px}
.status{color:var(--muted)}
table.rows td{font-size:13px}
table.runs td,table.events td,table.series-table td,table.conflicts td,table.rollbacks td,
table.rule-usage td{white-space:nowrap}
table.rows td.c-dn,table.rows td.c-facts{color:#374151;max-width:420px;word-break:break-word}
.muted{color:var(--muted)}
@media print{nav,.controls{display:none}}
"""

SCRIPT = r"""
(function () {
  "use strict";
  var tables = {};

  function setup(box) {
    var source = document.getElementById(box.getAttribute("data-table-source"));
    var data = JSON.parse(source.textContent);
    var cols = data.columns, strings = data.strings, rows = data.rows;
    var slots = [], at = 0;
    cols.forEach(function (c) { slots.push(at); at += c.kind === "dn" ? 2 : 1; });
    function value(row, i) {
      var c = cols[i], v = row[slots[i]];
      if (c.kind === "text") { return v; }
      if (c.kind === "ref") { return v < 0 ? "" : strings[v]; }
      if (c.kind === "refs") { return v.map(function (i) { return strings[i]; }).join("; "); }
      var parent = row[slots[i] + 1];
      return parent < 0 ? v : v + "," + strings[parent];
    }
    var hay = null;
    function haystack() {
      if (hay === null) {
        hay = rows.map(function (row) {
          var out = [];
          for (var i = 0; i < cols.length; i++) { out.push(value(row, i)); }
          return out.join("\u0001").toLowerCase();
        });
      }
      return hay;
    }
    var search = box.querySelector("[data-role=search]");
    var size = box.querySelector("[data-role=page-size]");
    var status = box.querySelector("[data-role=status]");
    var pageLabel = box.querySelector("[data-role=page]");
    var prev = box.querySelector("[data-role=prev]");
    var next = box.querySelector("[data-role=next]");
    var filterBox = box.querySelector("[data-role=filters]");
    var head = box.querySelector("thead tr");
    var body = box.querySelector("tbody");
    var noun = box.getAttribute("data-noun") || "rows";
    cols.forEach(function (c) {
      var th = document.createElement("th");
      th.textContent = c.label;
      head.appendChild(th);
    });
    var filters = {};
    cols.forEach(function (c, i) {
      if (!c.filter) { return; }
      var seen = {};
      rows.forEach(function (row) { seen[value(row, i)] = true; });
      var select = document.createElement("select");
      select.setAttribute("data-filter", c.key);
      select.setAttribute("aria-label", c.label);
      var all = document.createElement("option");
      all.value = "";
      all.textContent = "any " + c.label.toLowerCase();
      select.appendChild(all);
      Object.keys(seen).sort().forEach(function (v) {
        var option = document.createElement("option");
        option.value = v;
        option.textContent = v;
        select.appendChild(option);
      });
      select.addEventListener("change", apply);
      filterBox.appendChild(select);
      filters[c.key] = {index: i, select: select};
    });
    var matched = rows, page = 0;
    function apply() {
      var terms = search.value.toLowerCase().split(/\s+/).filter(Boolean);
      var active = [];
      Object.keys(filters).forEach(function (key) {
        var f = filters[key];
        if (f.select.value !== "") { active.push([f.index, f.select.value]); }
      });
      var h = terms.length ? haystack() : null;
      matched = [];
      outer: for (var r = 0; r < rows.length; r++) {
        for (var a = 0; a < active.length; a++) {
          if (value(rows[r], active[a][0]) !== active[a][1]) { continue outer; }
        }
        for (var t = 0; t < terms.length; t++) {
          if (h[r].indexOf(terms[t]) < 0) { continue outer; }
        }
        matched.push(rows[r]);
      }
      page = 0;
      render();
    }
    function render() {
      var n = parseInt(size.value, 10);
      var pages = Math.max(1, Math.ceil(matched.length / n));
      if (page >= pages) { page = pages - 1; }
      var fragment = document.createDocumentFragment();
      matched.slice(page * n, page * n + n).forEach(function (row) {
        var tr = document.createElement("tr");
        for (var i = 0; i < cols.length; i++) {
          var td = document.createElement("td");
          td.className = "c-" + cols[i].key;
          td.textContent = value(row, i);
          tr.appendChild(td);
        }
        fragment.appendChild(tr);
      });
      body.replaceChildren(fragment);
      var text = matched.length + " of " + rows.length + " " + noun + " match";
      if (rows.length < data.total) {
        text += " (this page holds the first " + rows.length + " of " + data.total + ")";
      }
      status.textContent = text;
      pageLabel.textContent = "page " + (page + 1) + " of " + pages;
      prev.disabled = page === 0;
      next.disabled = page >= pages - 1;
      box.setAttribute("data-matched", String(matched.length));
    }
    var timer = null;
    search.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(apply, 120);
    });
    size.addEventListener("change", function () { page = 0; render(); });
    prev.addEventListener("click", function () { page -= 1; render(); });
    next.addEventListener("click", function () { page += 1; render(); });
    tables[box.id] = {
      show: function (wanted) {
        search.value = "";
        Object.keys(filters).forEach(function (key) {
          var given = Object.prototype.hasOwnProperty.call(wanted, key);
          filters[key].select.value = given ? wanted[key] : "";
        });
        apply();
        box.scrollIntoView();
      }
    };
    apply();
  }

  document.querySelectorAll("[data-table-source]").forEach(setup);
  document.addEventListener("click", function (event) {
    var target = event.target.closest("[data-show-in]");
    if (!target) { return; }
    var table = tables[target.getAttribute("data-show-in")];
    if (!table) { return; }
    var wanted = {};
    Array.prototype.forEach.call(target.attributes, function (attr) {
      if (attr.name.indexOf("data-set-") === 0) { wanted[attr.name.slice(9)] = attr.value; }
    });
    table.show(wanted);
  });
})();
"""


def _digest(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


POLICY = (
    f"default-src 'none'; style-src {_digest(STYLE)}; script-src {_digest(SCRIPT)}; "
    "img-src 'none'; connect-src 'none'; font-src 'none'; form-action 'none'; base-uri 'none'"
)
