// Sends the pasted token to the server, which answers with a short-lived,
// HttpOnly session cookie for the playground page if it is a platform
// admin's; the token itself stays out of any storage here.
(function () {
  var form = document.getElementById("signin");
  var message = document.getElementById("message");
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var token = document.getElementById("token").value.trim().replace(/^Bearer\s+/i, "");
    fetch("/playground-signin/session", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: token }),
      credentials: "same-origin"
    }).then(function (res) {
      if (res.ok) { window.location.replace("/"); return; }
      message.textContent = res.status === 403
        ? "This token is not a platform admin's."
        : "This token is invalid or has expired.";
    }, function () { message.textContent = "The server did not answer."; });
  });
})();
