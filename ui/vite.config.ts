// Vite build of the control panel: relative asset paths so the same bundle works under the
// engine's /ui/ route and inside the Tauri webview; Vitest runs the unit tests in happy-dom.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  base: './',
  build: {
    target: 'es2022',
    chunkSizeWarningLimit: 400,
  },
  server: {
    // `npm run dev` against a local engine on :8080 (e.g. `attune demo --bind 127.0.0.1:8080`).
    proxy: {
      '/v1': { target: process.env.ATTUNE_URL ?? 'http://127.0.0.1:8080', changeOrigin: true },
    },
  },
  test: {
    environment: 'happy-dom',
    include: ['test/**/*.test.ts'],
  },
});
