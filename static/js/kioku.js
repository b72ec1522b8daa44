// Behaviour every page shares, kept out of the HTML so the Content-Security-Policy can refuse
// inline scripts and eval (htmx's hx-on needs eval, so it is not used):
// - <form data-confirm="Question?"> asks before it submits;
// - <form data-reset-on="event-name"> empties itself when that event reaches it (e.g. the
//   HX-Trigger a successful upload sends back).
(function () {
  "use strict";

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  function watchResets(root) {
    var forms = root.querySelectorAll ? root.querySelectorAll("form[data-reset-on]") : [];
    if (root.matches && root.matches("form[data-reset-on]")) forms = [root].concat(Array.from(forms));
    Array.prototype.forEach.call(forms, function (form) {
      if (form.dataset.resetWatched) return;
      form.dataset.resetWatched = "1";
      form.addEventListener(form.dataset.resetOn, function () { form.reset(); });
    });
  }

  if (window.htmx) window.htmx.onLoad(watchResets);
  else document.addEventListener("DOMContentLoaded", function () { watchResets(document); });
})();
