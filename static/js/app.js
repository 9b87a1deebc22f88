// A little vanilla JavaScript: htmx settings, modal dialogs and the evidence form's kind switch.
// Everything works without it (forms post normally); this only makes it smoother.
(function () {
  "use strict";

  // htmx settings, here rather than in a <meta name="htmx-config"> so that the page carries no
  // configuration htmx would evaluate, under a Content-Security-Policy without 'unsafe-eval' or
  // inline styles. Deferred scripts run in order before DOMContentLoaded, when htmx starts.
  if (window.htmx) {
    Object.assign(window.htmx.config, {
      allowEval: false,
      allowScriptTags: false,
      includeIndicatorStyles: false,
      // A 400 carries the form again with its errors next to the fields: swap it in like a 200.
      responseHandling: [
        {code: "204", swap: false},
        {code: "[23]..", swap: true},
        {code: "400", swap: true, error: false},
        {code: "...", swap: false, error: true}
      ]
    });
  }

  // A refused form is answered with its page again, at the form's POST-only URL: put the
  // page's own address back in the address bar, so a reload or a bookmark opens the page.
  var canonical = document.body && document.body.getAttribute("data-canonical-url");
  if (canonical && window.history && window.history.replaceState) {
    try {
      var target = new URL(canonical, window.location.href);
      if (target.origin === window.location.origin && target.href !== window.location.href) {
        window.history.replaceState(window.history.state, "", target.href);
      }
    } catch (error) { /* a malformed address: leave the bar as it is */ }
  }

  function openDialog(dialog, opener) {
    dialog.showModal();
    dialog.returnFocusTo = opener || null;
    var first = dialog.querySelector("input:not([type=hidden]), select, textarea, button");
    if (first) first.focus();
  }

  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-open-dialog]");
    if (opener) {
      var dialog = document.getElementById(opener.getAttribute("data-open-dialog"));
      if (dialog) { event.preventDefault(); openDialog(dialog, opener); }
      return;
    }
    var closer = event.target.closest("[data-close-dialog]");
    if (closer) { closer.closest("dialog").close(); }
  });

  document.addEventListener("close", function (event) {
    var dialog = event.target;
    if (dialog.returnFocusTo) dialog.returnFocusTo.focus();
  }, true);

  function syncEvidenceKind(form) {
    var kind = form.querySelector("[name=kind]:checked, select[name=kind]");
    if (!kind) return;
    form.querySelectorAll("[data-kind]").forEach(function (row) {
      row.hidden = row.getAttribute("data-kind") !== kind.value;
    });
  }

  function init(root) {
    root.querySelectorAll("form.evidence-form").forEach(syncEvidenceKind);
    root.querySelectorAll("dialog[data-open-on-load]").forEach(function (d) { openDialog(d); });
    // A refusal shown at the top of a long page: scroll to it and read it out.
    var refusal = root.querySelector("[data-focus-on-load]");
    if (refusal) refusal.focus();
  }

  document.addEventListener("change", function (event) {
    var form = event.target.closest("form.evidence-form");
    if (form && event.target.name === "kind") syncEvidenceKind(form);
  });
  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:afterSwap", function (event) { init(event.target); });

  // An inline change the server refused outright (403, 404, 5xx) or could not reach: say so
  // instead of leaving the card as it was without a word.
  function requestFailed(text) {
    var box = document.getElementById("request-error");
    if (!box) return;
    box.textContent = text;
    box.hidden = false;
  }
  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr.status;
    requestFailed(status === 403 || status === 404
      ? "Error: that change is not allowed (" + status + "). Reload the page to see the current state."
      : "Error: the server could not make that change (" + status + "). Nothing was saved; try again.");
  });
  document.addEventListener("htmx:sendError", function () {
    requestFailed("Error: the server could not be reached. Nothing was saved; try again.");
  });
})();
