(function () {
  "use strict";
  // Filters and search over the report. Reads only the DOM: no recorded data lives in this script.
  var root = document.documentElement;
  var group = document.getElementById("f-group");
  var verdict = document.getElementById("f-verdict");
  var search = document.getElementById("f-search");
  var counter = document.getElementById("f-count");
  var items = Array.prototype.slice.call(document.querySelectorAll("[data-filter]"));
  var routeRows = items.filter(function (el) { return el.hasAttribute("data-count"); });
  var texts = new Map();

  function textOf(el) {
    var text = texts.get(el);
    if (text === undefined) {
      text = el.textContent.toLowerCase();
      texts.set(el, text);
    }
    return text;
  }

  function hasVerdict(el, wanted) {
    var list = " " + (el.getAttribute("data-verdicts") || "") + " ";
    return list.indexOf(" " + wanted + " ") >= 0;
  }

  function keep(el, g, v, q) {
    var scope = el.getAttribute("data-filter");
    if (scope === "verdict") return !v || hasVerdict(el, v);
    if (g && el.getAttribute("data-group") !== g) return false;
    if (scope === "group") return true;
    if (v && !hasVerdict(el, v)) return false;
    return !q || textOf(el).indexOf(q) >= 0;
  }

  function apply() {
    var g = group.value, v = verdict.value, q = search.value.trim().toLowerCase();
    items.forEach(function (el) { el.hidden = !keep(el, g, v, q); });
    var shown = routeRows.filter(function (el) { return !el.hidden; }).length;
    counter.textContent = (g || v || q) ? shown + " of " + routeRows.length + " routes" : routeRows.length + " routes";
  }

  var pending = null;
  function later() {
    if (pending) clearTimeout(pending);
    pending = setTimeout(apply, 120);
  }

  // Links can open the report filtered: report.html?group=trade&verdict=failing&q=amount
  var params = new URLSearchParams(location.search);
  function preset(select, value) {
    if (!value) return;
    for (var i = 0; i < select.options.length; i++) {
      if (select.options[i].value === value) { select.value = value; return; }
    }
  }
  preset(group, params.get("group"));
  preset(verdict, params.get("verdict"));
  if (params.get("q")) search.value = params.get("q");

  group.addEventListener("change", apply);
  verdict.addEventListener("change", apply);
  search.addEventListener("input", later);
  // Opening a route from the tables: unfold its first example.
  window.addEventListener("hashchange", function () {
    var target = document.getElementById(location.hash.slice(1));
    if (target && target.hidden) { group.value = ""; verdict.value = ""; search.value = ""; apply(); }
  });
  apply();
  root.setAttribute("data-js", "ready");
  // Proof for the tests that recorded markup never runs: a hostile body would set this flag.
  if (window.__pwned) {
    var marker = document.createElement("p");
    marker.id = "pwned";
    marker.textContent = "hostile recorded content executed";
    document.body.insertBefore(marker, document.body.firstChild);
  }
})();
