// Starts Swagger UI on Shoal's /docs page. A file rather than an inline script,
// so the page's Content-Security-Policy can allow scripts from this server only.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    domNode: root,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    deepLinking: true,
    // Credentials stay in the page's memory: persisting them would put bearer
    // tokens and API keys in localStorage, readable by any script of the origin.
    persistAuthorization: false,
    displayRequestDuration: true,
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
    filter: true,
    // No validator badge: it would send the document to an outside service.
    validatorUrl: null,
  });
})();
