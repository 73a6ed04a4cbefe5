import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";
import { firstLoadBudget } from "./first-load.ts";

// The control plane serves dist/: index.html at / and /dashboard/*, the hashed files at /assets/*.
export default defineConfig({
  plugins: [react(), firstLoadBudget(300)],
  base: "/",
  build: { outDir: "dist", assetsDir: "assets", sourcemap: false, chunkSizeWarningLimit: 600 },
  server: { proxy: { "/v1": { target: "http://127.0.0.1:8080", ws: true } } },
});
