// Lists the operations of the OpenAPI document on /api/docs. A file of its own rather
// than an inline script: the content security policy allows scripts from this origin only.
fetch("/api/openapi.json").then((r) => r.json()).then((spec) => {
  const body = document.querySelector("#ops tbody");
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const row = body.insertRow();
      row.insertCell().textContent = method.toUpperCase();
      row.insertCell().textContent = path;
      row.insertCell().textContent = op.summary || "";
    }
  }
});
