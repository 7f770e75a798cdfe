// The subscribe page's "papers like…" box (issue 13): find stored papers by title and add them,
// one title a line, to the examples. Titles are data: set as text, never as HTML.
"use strict";

(function () {
  var search = document.getElementById("like-search");
  var results = document.getElementById("like-results");
  var likes = document.getElementById("likes");
  if (!search || !results || !likes) return;
  var timer = null;
  var latest = 0;

  function add(title) {
    var lines = likes.value.split("\n").map(function (l) { return l.trim(); }).filter(Boolean);
    if (lines.indexOf(title) < 0) lines.push(title);
    likes.value = lines.join("\n");
  }

  function show(papers) {
    results.textContent = "";
    papers.forEach(function (paper) {
      var item = document.createElement("li");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "add-like";
      button.textContent = "Add";
      button.addEventListener("click", function () { add(paper.title); });
      var title = document.createElement("span");
      title.textContent = " " + paper.title;
      item.appendChild(button);
      item.appendChild(title);
      results.appendChild(item);
    });
  }

  search.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () {
      var ask = ++latest;
      fetch("/api/papers?q=" + encodeURIComponent(search.value))
        .then(function (r) { return r.ok ? r.json() : { papers: [] }; })
        .then(function (body) { if (ask === latest) show(body.papers || []); });
    }, 250);
  });
})();
