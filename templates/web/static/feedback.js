// The feedback page of a "More like this" / "Less like this" link: a person's click on the link
// is the vote, so the page sends it at once. Nothing is recorded by the GET that loaded it (mail
// scanners fetch every link); without scripts, the button does the same.
"use strict";

(function () {
  var form = document.getElementById("vote-form");
  if (form) form.submit();
})();
