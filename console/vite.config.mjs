// The console's build: relative asset URLs (the same files serve under
// /t/<slug>/console/ and <slug>.<domain>/console/), no inline script or
// data: URI (the CSP allows neither), content-hashed names.
import { defineConfig } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';

export default defineConfig({
  base: './',
  plugins: [svelte()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
    target: 'es2022',
  },
});
