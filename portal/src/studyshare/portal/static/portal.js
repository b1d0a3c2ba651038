// StudyShare portal: the little behaviour the pages need beyond htmx (CSP: no inline script).
(function () {
  "use strict";

  // "Copy this information": copies the text of the element named by data-copy.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) return;
    var text = source.innerText;
    var done = function () {
      var status = document.getElementById(button.getAttribute("data-copied"));
      if (status) status.hidden = false;
      button.setAttribute("data-copied-at", String(Date.now()));
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallback(text); done(); });
    } else {
      fallback(text);
      done();
    }
  });

  // "Open in Weasis": a fresh viewer token for the study, then its weasis:// link.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-weasis]");
    if (!button) return;
    var headers = JSON.parse(document.body.getAttribute("hx-headers") || "{}");
    headers["Content-Type"] = "application/x-www-form-urlencoded";
    var failed = function () {
      var notice = document.getElementById(button.getAttribute("data-failed"));
      if (notice) notice.hidden = false;
    };
    fetch("/viewer/token", {
      method: "POST",
      credentials: "same-origin",
      headers: headers,
      body: new URLSearchParams({ study: button.getAttribute("data-weasis") }).toString(),
    })
      .then(function (response) {
        if (!response.ok) throw response.status;
        return response.json();
      })
      .then(function (issued) {
        button.setAttribute("data-href", issued.weasis);
        window.location.href = issued.weasis;
      }, failed);
  });

  function fallback(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } catch (e) { /* nothing more to try */ }
    document.body.removeChild(area);
  }
})();
