// batchyard dashboard: refresh the parts of a page marked data-poll without reloading it.
// Each marked element is replaced by the HTML fragment its URL returns; polling stops once
// the fragment says the batch reached a final status (data-terminal).
(function () {
  "use strict";

  function poll(el) {
    var url = el.getAttribute("data-poll");
    var every = parseInt(el.getAttribute("data-interval") || "2000", 10);
    function tick() {
      if (document.hidden) { return setTimeout(tick, every); }
      fetch(url, {credentials: "same-origin", headers: {"x-fragment": "1"}})
        .then(function (res) {
          if (res.status === 401) { window.location.assign("/ui/login"); return null; }
          return res.ok ? res.text() : null;
        })
        .then(function (html) {
          if (html === null) { return setTimeout(tick, every * 2); }
          el.innerHTML = html;
          bindConfirms(el);
          if (el.querySelector("[data-terminal]")) { return; }
          setTimeout(tick, every);
        })
        .catch(function () { setTimeout(tick, every * 2); });
    }
    if (!el.querySelector("[data-terminal]")) { setTimeout(tick, every); }
  }

  function bindConfirms(root) {
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-poll]").forEach(poll);
    bindConfirms(document);
  });
})();
