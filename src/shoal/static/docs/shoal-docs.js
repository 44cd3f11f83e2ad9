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
    // The Authorize dialog's token or API key survives a reload of the page.
    persistAuthorization: true,
    displayRequestDuration: true,
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
    filter: true,
    // No validator badge: it would send the document to an outside service.
    validatorUrl: null,
  });
})();
