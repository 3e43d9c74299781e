// A minimal offline GraphQL console: the token stays in sessionStorage.
(function () {
  const $ = (id) => document.getElementById(id);
  $("token").value = sessionStorage.getItem("billing.token") || "";
  $("token").addEventListener("change", () => sessionStorage.setItem("billing.token", $("token").value.trim()));
  $("run").addEventListener("click", async () => {
    let variables = {};
    try { variables = JSON.parse($("variables").value || "{}"); } catch (e) { $("result").textContent = "Variables are not valid JSON."; return; }
    const headers = { "Content-Type": "application/json" };
    const token = $("token").value.trim();
    if (token) headers.Authorization = token.startsWith("Bearer ") ? token : "Bearer " + token;
    const res = await fetch("/graphql", { method: "POST", headers, body: JSON.stringify({ query: $("query").value, variables }) });
    $("result").textContent = JSON.stringify(await res.json(), null, 2);
  });
})();
