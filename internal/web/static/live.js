// Refreshes the overview's numbers while the page is open. The page is
// whole without this script; it only fetches the same content again.
(function () {
  "use strict";
  var box = document.getElementById("live");
  if (!box || !window.fetch) { return; }
  var every = parseInt(box.getAttribute("data-every"), 10) || 10000;
  function refresh() {
    // Not while the page is hidden, nor under the keyboard's focus: a
    // replaced link would lose it. Screen readers are not told of each
    // refresh (no aria-live): the numbers change quietly.
    if (document.hidden || box.contains(document.activeElement)) { return; }
    fetch(box.getAttribute("data-src"), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) { return; }
        // Keep an open table of numbers open across the refresh.
        var open = box.querySelector("details[open]") !== null;
        var doc = new DOMParser().parseFromString("<div>" + html + "</div>", "text/html");
        box.replaceChildren.apply(box, Array.prototype.slice.call(doc.body.firstChild.childNodes));
        if (open) { var d = box.querySelector("details"); if (d) { d.open = true; } }
      })
      .catch(function () { /* the next tick tries again */ });
  }
  setInterval(refresh, every);
})();
