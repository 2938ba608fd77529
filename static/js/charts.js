/* Charts: draws the Plotly figures a page carries, loading plotly.js only when there is one.
 *
 * The server renders each chart as a box with its figure in a JSON <script> (runs/plots.py
 * figure_html), never an inline script, so the page works under a CSP without
 * 'unsafe-inline'. This file is small and loaded deferred on every page; the 4.8 MB
 * plotly.js (a hashed, cacheable name given in data-plotly-src) is fetched the first time a
 * chart box is found — on load or after an htmx swap brings one in (a model's Monitoring tab).
 */
(function () {
  "use strict";

  var script = document.currentScript;
  var plotlySrc = script && script.getAttribute("data-plotly-src");
  var waiting = null; // callbacks while plotly.js is loading

  function withPlotly(callback, onError) {
    if (window.Plotly) { callback(); return; }
    if (waiting) { waiting.push([callback, onError]); return; }
    waiting = [[callback, onError]];
    var tag = document.createElement("script");
    tag.src = plotlySrc;
    tag.async = true;
    tag.onload = function () {
      var queue = waiting; waiting = null;
      queue.forEach(function (pair) { pair[0](); });
    };
    tag.onerror = function () {
      var queue = waiting; waiting = null;
      queue.forEach(function (pair) { pair[1](); });
    };
    document.head.appendChild(tag);
  }

  function pending() {
    var boxes = document.querySelectorAll("[data-plotly-figure]:not([data-drawn])");
    return Array.prototype.slice.call(boxes);
  }

  function draw(box) {
    if (!box.isConnected || box.hasAttribute("data-drawn")) return;
    box.setAttribute("data-drawn", "");
    var data = box.querySelector("script[type='application/json']");
    var target = box.querySelector(".plotly-graph-div");
    if (!data || !target) return;
    var spec = JSON.parse(data.textContent);
    window.Plotly.newPlot(target, spec.figure.data || [], spec.figure.layout || {}, spec.config || {});
  }

  function drawAll() {
    var boxes = pending();
    if (!boxes.length) return;
    withPlotly(
      function () { boxes.forEach(draw); },
      function () {
        boxes.forEach(function (box) {
          var target = box.querySelector(".plotly-graph-div");
          if (target) target.textContent = "The chart library could not be loaded; reload the page to try again.";
        });
      }
    );
  }

  // After any htmx swap (a tab, a fragment): draw the boxes it brought in.
  document.addEventListener("htmx:afterSettle", drawAll);
  document.addEventListener("htmx:load", drawAll);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", drawAll);
  else drawAll();
})();
