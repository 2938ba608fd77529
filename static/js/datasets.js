/* Upload progress for the Datasets page. The upload form posts through htmx
 * (hx-encoding="multipart/form-data"), which fires htmx:xhr:* events for the request;
 * this shows them on the form's progress bar. Without JavaScript the form posts normally. */
(function () {
  "use strict";

  function parts(event) {
    var form = event.target && event.target.closest && event.target.closest("[data-upload-progress]");
    if (!form) return null;
    return {
      form: form,
      box: form.querySelector("[data-upload-status]"),
      meter: form.querySelector("[role=progressbar]"),
      bar: form.querySelector("[data-upload-bar]"),
      text: form.querySelector("[data-upload-text]")
    };
  }

  function size(bytes) {
    if (bytes < 1024 * 1024) return Math.round(bytes / 1024) + " KB";
    return (bytes / (1024 * 1024)).toFixed(1) + " MB";
  }

  function show(p, pct, message) {
    if (!p.box) return;
    p.box.hidden = false;
    p.bar.style.width = pct + "%"; // CSSOM, not an inline style attribute: allowed by the CSP
    p.meter.setAttribute("aria-valuenow", String(pct));
    p.text.textContent = message;
  }

  document.addEventListener("htmx:xhr:loadstart", function (event) {
    var p = parts(event);
    if (!p) return;
    p.form.dataset.uploadPct = "0";
    show(p, 0, "Uploading…");
    var button = p.form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
  });

  // htmx reports both the upload and the response download here: keep the bar monotonic.
  document.addEventListener("htmx:xhr:progress", function (event) {
    var p = parts(event);
    if (!p || !event.detail.lengthComputable || !event.detail.total) return;
    var pct = Math.floor((100 * event.detail.loaded) / event.detail.total);
    var before = parseInt(p.form.dataset.uploadPct || "0", 10);
    if (pct < before) return;
    p.form.dataset.uploadPct = String(pct);
    show(
      p,
      pct,
      pct >= 100
        ? "Uploaded; reading and checking the file…"
        : "Uploading… " + pct + "% (" + size(event.detail.loaded) + " of " + size(event.detail.total) + ")"
    );
  });

  document.addEventListener("htmx:xhr:abort", function (event) {
    var p = parts(event);
    if (p) show(p, 0, "Upload cancelled.");
  });

  // A failed request (413, 500, no connection) leaves the form in place: let the user retry.
  // (A 400 swaps in the form with its errors; a success redirects the browser.)
  function failed(event, why) {
    var p = parts(event);
    if (!p) return;
    var button = p.form.querySelector("button[type=submit]");
    if (button) button.disabled = false;
    show(p, 0, "The upload did not go through: " + why + ". Try again.");
  }
  document.addEventListener("htmx:responseError", function (event) {
    failed(event, "the server answered " + event.detail.xhr.status);
  });
  document.addEventListener("htmx:sendError", function (event) {
    failed(event, "the server cannot be reached");
  });
})();
