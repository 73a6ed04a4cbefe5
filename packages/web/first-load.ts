import { gzipSync } from "node:zlib";
import type { Plugin } from "vite";

/**
 * Issue 13's budget: the first load (index.html, the entry chunk, the chunks
 * it imports statically and their CSS) stays ≤ `limitKiB` of gzip. Pages
 * loaded with import() are not part of it. The build prints the figure and
 * fails past the limit, so a heavy import cannot slip in unnoticed.
 */
export function firstLoadBudget(limitKiB: number): Plugin {
  return {
    name: "wrenn-first-load-budget",
    apply: "build",
    // After every generateBundle: the HTML exists and chunks hold their final code.
    writeBundle(_options, bundle) {
      const gz = (code: string | Uint8Array) => gzipSync(code).length;
      const seen = new Set<string>();
      const css = new Set<string>();
      const visit = (file: string) => {
        const chunk = bundle[file];
        if (seen.has(file) || chunk?.type !== "chunk") return;
        seen.add(file);
        for (const c of chunk.viteMetadata?.importedCss ?? []) css.add(c);
        for (const dep of chunk.imports) visit(dep);
      };
      for (const [file, out] of Object.entries(bundle)) {
        if (out.type === "chunk" && out.isEntry) visit(file);
      }
      let js = 0;
      for (const f of seen) {
        const c = bundle[f];
        if (c?.type === "chunk") js += gz(c.code);
      }
      let styles = 0;
      for (const f of css) {
        const a = bundle[f];
        if (a?.type === "asset") styles += gz(a.source);
      }
      const html = bundle["index.html"];
      const page = html?.type === "asset" ? gz(html.source) : 0;
      const kib = (n: number) => (n / 1024).toFixed(2);
      const total = js + styles + page;
      const line = `first load: ${kib(total)} KiB gzip (JS ${kib(js)} in ${seen.size} chunk(s), CSS ${kib(styles)}, HTML ${kib(page)}; budget ${limitKiB} KiB)`;
      if (total > limitKiB * 1024) this.error(`${line}: over budget`);
      this.info(line);
    },
  };
}
