// The console works without this script; it only adds conveniences.
// Loaded from the console itself (the Content-Security-Policy allows no
// inline script), after the page has been parsed.
(function () {
  "use strict";

  // "Copy" buttons next to read-only fields (a new API key, the webhook
  // URL). Without the script they stay hidden: the field can be selected.
  document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
    var field = document.getElementById(button.getAttribute("data-copy"));
    if (!field || !navigator.clipboard) {
      return;
    }
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(field.value).then(function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = "Copy"; }, 2000);
      }, function () {
        field.select();
      });
    });
  });

  // Read-only fields select their whole value on focus, for copying.
  document.querySelectorAll("input[readonly]").forEach(function (field) {
    field.addEventListener("focus", function () { field.select(); });
  });

  // After a playground run, bring the results into view.
  var results = document.getElementById("results");
  if (results) {
    results.scrollIntoView({ block: "start" });
  }
})();
