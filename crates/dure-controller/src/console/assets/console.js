// The console's one script: follows the controller's event stream and asks
// htmx to refresh what the page shows, and asks before dangerous actions.
// Pages read without it; only live updates and the dialog need it.
(function () {
  "use strict";

  // Many events arrive together (an operation, then each member's state):
  // one refresh per burst is enough.
  var pending = null;
  function changed() {
    if (pending !== null) return;
    pending = setTimeout(function () {
      pending = null;
      htmx.trigger(document.body, "dure:changed");
    }, 150);
  }

  function follow(url) {
    var live = document.getElementById("live");
    var source = new EventSource(url);
    // Opening again after a break may have missed events: refresh then too.
    source.onopen = function () {
      if (live) live.classList.add("on");
      changed();
    };
    source.onmessage = changed;
    source.addEventListener("lagged", changed);
    source.onerror = function () {
      if (live) live.classList.remove("on");
    };
  }

  // The button that submitted a form last, so the confirm step knows which.
  var lastButton = null;
  document.addEventListener("click", function (e) {
    var button = e.target.closest && e.target.closest("button[name=action]");
    if (button) lastButton = button;
    var all = e.target.closest && e.target.closest("#select-all");
    if (all) {
      document.querySelectorAll("input[name=cluster]").forEach(function (box) {
        box.checked = all.checked;
      });
    }
  });

  // A button with data-confirm asks first in a dialog naming the ticked
  // clusters (and, for an immediate stop, every member it kills).
  document.addEventListener("htmx:confirm", function (e) {
    var button = lastButton;
    lastButton = null;
    if (!button || !button.dataset.confirm) return;
    var form = button.form;
    var picked = form.querySelectorAll("input[name=cluster]:checked");
    if (picked.length === 0) return; // the server says to pick one
    e.preventDefault();
    var dialog = document.getElementById("confirm-dialog");
    document.getElementById("confirm-text").textContent = button.dataset.confirm;
    var list = document.getElementById("confirm-list");
    list.replaceChildren();
    picked.forEach(function (box) {
      var item = document.createElement("li");
      item.textContent = button.dataset.confirmMembers
        ? box.value + ": " + box.dataset.members
        : box.value;
      list.appendChild(item);
    });
    var confirmed = form.querySelector("input[name=confirmed]");
    var ok = document.getElementById("confirm-ok");
    var cancel = document.getElementById("confirm-cancel");
    function done(go) {
      ok.onclick = null;
      cancel.onclick = null;
      dialog.close();
      if (go) {
        confirmed.value = "yes";
        e.detail.issueRequest(true);
        confirmed.value = "";
      }
    }
    ok.onclick = function () { done(true); };
    cancel.onclick = function () { done(false); };
    dialog.showModal();
  });

  document.addEventListener("DOMContentLoaded", function () {
    var url = document.body.dataset.stream;
    if (url) follow(url);
  });
})();
