// The subscribe and manage pages: the browser's time zone as the default, the weekday shown only
// for weekly digests, and the query checked as you type with a preview of what it would find.
"use strict";

(function () {
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  document.querySelectorAll("form.subscribe select.tz").forEach(function (select) {
    if (zone && Array.prototype.some.call(select.options, function (o) { return o.value === zone; })) {
      if (select.value === "UTC") select.value = zone;
    }
  });

  document.querySelectorAll("select.cadence").forEach(function (select) {
    var row = select.closest(".row");
    function sync() {
      row.querySelector(".weekday").classList.toggle("hidden", select.value !== "weekly");
      row.querySelectorAll(".when").forEach(function (label) { label.classList.toggle("hidden", select.value === "instant"); });
    }
    select.addEventListener("change", sync);
    sync();
  });

  var input = document.getElementById("query");
  if (!input) return;
  var check = document.getElementById("query-check");
  var preview = document.getElementById("preview");
  var timer = null;
  var latest = 0;

  function el(tag, text, className) {
    var node = document.createElement(tag);  // text only: titles come from dumps, never markup
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  function showError(error) {
    check.replaceChildren();
    var box = el("div", undefined, "query-error");
    box.setAttribute("role", "alert");
    var message = error.message.charAt(0).toUpperCase() + error.message.slice(1);
    box.appendChild(el("p", message + (error.column ? " (column " + error.column + ")." : ".")));
    if (error.column) box.appendChild(el("pre", input.value + "\n" + " ".repeat(error.column - 1) + "^"));
    check.appendChild(box);
    input.setAttribute("aria-invalid", "true");
    preview.hidden = true;
  }

  function showPreview(result) {
    check.replaceChildren();
    input.removeAttribute("aria-invalid");
    document.getElementById("preview-days").textContent = result.days;
    var count = result.count;
    document.getElementById("preview-count").textContent = count === 0
      ? "No paper matched. Your subscription still catches the next ones that do."
      : count + (count === 1 ? " paper matched" : " papers matched")
        + (result.searched >= result.most ? " among the newest " + result.most : "")
        + (count > result.papers.length ? "; the best " + result.papers.length + ":" : ":");
    var list = document.getElementById("preview-list");
    list.replaceChildren();
    result.papers.forEach(function (paper) {
      var item = el("li", paper.title);
      item.appendChild(el("span", " · " + paper.first_seen, "small"));
      list.appendChild(item);
    });
    preview.hidden = false;
  }

  function run() {
    var text = input.value;
    if (!text.trim()) { check.replaceChildren(); preview.hidden = true; return; }
    var ticket = ++latest;
    fetch("/api/query?q=" + encodeURIComponent(text), { headers: { "Accept": "application/json" } })
      .then(function (response) { return response.json(); })
      .then(function (result) {
        if (ticket !== latest) return;  // an answer to an older keystroke
        if (result.ok) showPreview(result);
        else if (result.error && result.error.message) showError(result.error);
        // else: too many requests for now (429); the next keystroke asks again

      })
      .catch(function () {});
  }

  input.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(run, 250); });
  if (input.value.trim()) run();
})();
