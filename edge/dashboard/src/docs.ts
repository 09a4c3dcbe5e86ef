// The REST API explorer at /api/docs: Swagger UI over the OpenAPI document that
// `make gen` writes from the contracts (gen/openapi.json, served at /api/openapi.json).
// Bundled from npm like the dashboard, so it runs under the same strict CSP: no CDN, no
// inline script. "Authorize" takes an access token from POST /api/v1/auth/login.
import SwaggerUIBundle from "swagger-ui-dist/swagger-ui-es-bundle.js";
import "swagger-ui-dist/swagger-ui.css";

SwaggerUIBundle({
  url: "/api/openapi.json",
  dom_id: "#api-docs",
  deepLinking: true,
  tryItOutEnabled: false,
  displayRequestDuration: true,
  docExpansion: "list",
  defaultModelsExpandDepth: 0,
});
