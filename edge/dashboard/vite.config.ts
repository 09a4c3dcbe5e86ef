import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The edge serves dist/ at "/" (assets under /assets/, index.html for the app's routes,
// docs.html at /api/docs).
// In development Vite proxies the same-origin endpoints to the stack's Envoy.
const target = "http://127.0.0.1:8080";

export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "dist",
    assetsDir: "assets",
    sourcemap: false,
    // Swagger UI (the /api/docs page only) is one ~1.5 MB chunk of its own.
    chunkSizeWarningLimit: 2000,
    // The dashboard, and the REST API explorer at /api/docs (docs.html).
    rollupOptions: { input: { main: "index.html", docs: "docs.html" } },
  },
  server: {
    port: 5173,
    proxy: {
      "/api": { target, changeOrigin: true },
      "/session": { target, changeOrigin: true },
      "/model": { target, changeOrigin: true },
      // python-socketio checks Origin against Host: present the stack's own origin.
      "/socket.io": {
        target,
        changeOrigin: true,
        ws: true,
        headers: { origin: target },
        configure: (proxy: { on: (event: string, fn: (req: { setHeader: (k: string, v: string) => void }) => void) => void }) => {
          proxy.on("proxyReqWs", (req) => req.setHeader("origin", target));
          proxy.on("proxyReq", (req) => req.setHeader("origin", target));
        },
      },
    },
  },
  test: { environment: "node", include: ["src/**/*.test.ts"] },
} as never);
