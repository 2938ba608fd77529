/* The workspace's own JavaScript: small progressive enhancements on top of htmx.
 * Every page works without it (forms post, links navigate); this adds dialogs, the
 * editor's "go to line", following logs, error toasts and keyboard shortcuts. */
(function () {
  "use strict";

  function toast(message) {
    var box = document.getElementById("toast");
    if (!box) return;
    box.textContent = message;
    box.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(function () { box.hidden = true; }, 6000);
  }

  // Failed htmx requests: say what went wrong instead of doing nothing.
  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var text = "";
    try {
      var doc = new DOMParser().parseFromString(xhr.responseText || "", "text/html");
      var node = doc.querySelector("[data-error-message]");
      text = node ? node.textContent.trim() : "";
    } catch (e) { /* not HTML */ }
    toast(text || ("The server answered " + xhr.status + " " + (xhr.statusText || "") + "."));
  });
  document.addEventListener("htmx:sendError", function () {
    toast("The server cannot be reached. Check your connection and try again.");
  });

  document.addEventListener("click", function (event) {
    var target = event.target;
    // Dialogs: a link with data-dialog-open opens the dialog (its href is the no-JS page).
    var opener = target.closest("[data-dialog-open]");
    if (opener) {
      var dialog = document.getElementById(opener.getAttribute("data-dialog-open"));
      if (dialog && typeof dialog.showModal === "function") {
        event.preventDefault();
        dialog.showModal();
        var first = dialog.querySelector("input:not([type=hidden]), textarea, select");
        if (first) first.focus();
      }
      return;
    }
    var closer = target.closest("[data-dialog-close]");
    if (closer && closer.closest("dialog")) {
      event.preventDefault();
      closer.closest("dialog").close();
      return;
    }
    var dismiss = target.closest("[data-dismiss]");
    if (dismiss) {
      dismiss.parentElement.remove();
      return;
    }
    // Manifest editor: jump to the line an error is about.
    var goto = target.closest("[data-goto-line]");
    if (goto) {
      var area = document.getElementById("manifest-text");
      if (area) gotoLine(area, parseInt(goto.getAttribute("data-goto-line"), 10));
      return;
    }
    var toggle = target.closest("[data-toggle]");
    if (toggle) {
      var nav = document.getElementById(toggle.getAttribute("data-toggle"));
      if (nav) {
        var open = nav.classList.toggle("is-open");
        toggle.setAttribute("aria-expanded", open ? "true" : "false");
      }
    }
  });

  // Buttons that ask first (deprecate, archive).
  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    var question = button && button.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      return;
    }
    var form = event.target;
    var busy = form.getAttribute("data-busy-label");
    if (busy && button) {
      // Long synchronous actions (a monitoring check): show that something happens.
      setTimeout(function () { button.disabled = true; button.textContent = busy; }, 0);
    }
  }, true);

  function gotoLine(area, line) {
    var lines = area.value.split("\n");
    var start = 0;
    for (var i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
    var end = start + (lines[line - 1] || "").length;
    area.focus();
    area.setSelectionRange(start, end);
    var lineHeight = parseFloat(getComputedStyle(area).lineHeight) || 18;
    area.scrollTop = Math.max(0, (line - 5) * lineHeight);
  }

  document.addEventListener("keydown", function (event) {
    var area = event.target;
    if (!(area instanceof HTMLTextAreaElement)) return;
    // Tab indents in the manifest editor instead of leaving it.
    if (area.id === "manifest-text" && event.key === "Tab" && !event.shiftKey) {
      event.preventDefault();
      var s = area.selectionStart;
      area.setRangeText("  ", s, area.selectionEnd, "end");
      return;
    }
    // Ctrl/Cmd+Enter sends the chat message.
    if (area.closest("#chat-form") && event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      var form = area.closest("form");
      if (form.requestSubmit) form.requestSubmit(); else form.submit();
    }
  });

  // Logs follow: keep the newest line in view unless the reader scrolled up.
  var logWasAtBottom = true;
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var log = document.getElementById("log-lines");
    if (log && event.detail.target === log) {
      logWasAtBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    }
  });
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    var log = document.getElementById("log-lines");
    if (log && event.detail.target === log) {
      var empty = document.getElementById("log-empty");
      if (empty) empty.remove();
      if (logWasAtBottom) log.scrollTop = log.scrollHeight;
    }
  });

  // New chat messages: show the start of the new exchange; drop the examples.
  var chatCount = 0;
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "chat-log") {
      chatCount = event.detail.target.children.length;
    }
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "chat-log") {
      var log = event.detail.target;
      var empty = document.getElementById("chat-empty");
      var first = log.children[chatCount] || log.lastElementChild;
      if (empty) { empty.remove(); first = log.firstElementChild; }
      if (first) log.scrollTop = first.offsetTop - log.offsetTop - 8;
    }
  });

  // A sent chat message leaves the box empty for the next one.
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    if (form && form.id === "chat-form" && event.detail.successful) {
      var box = form.querySelector("textarea");
      if (box) box.value = "";
    }
  });

  // Compare: enable the button once two runs are ticked.
  document.addEventListener("change", function (event) {
    var form = event.target.closest("#compare-form");
    if (!form) return;
    var n = form.querySelectorAll("input[name=ids]:checked").length;
    var button = form.querySelector("[data-compare-button]");
    if (button) button.textContent = n >= 2 ? "Compare " + n + " runs" : "Compare selected runs";
  });

  function init() {
    var log = document.getElementById("log-lines");
    if (log) log.scrollTop = log.scrollHeight;
    var chat = document.getElementById("chat-log");
    if (chat) chat.scrollTop = chat.scrollHeight;
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
