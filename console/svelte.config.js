// Svelte's compiler options for the console: runes mode everywhere.
export default {
  compilerOptions: { runes: true },
};
