// src/ must have no import cycle (issue 16 found one in src/image): in a cycle, which module's top level runs
// first depends on which one the program happened to import first, so a module can see
// another's exports still undefined; and none of them can be understood, or tested, alone.
// The edges are the static imports and re-exports of the .ts sources, without the
// type-only ones (TypeScript erases them); dynamic import() loads later and is no edge.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const SRC = join(ROOT, 'src');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? sources(join(dir, d.name)) : d.name.endsWith('.ts') && !d.name.endsWith('.d.ts') ? [join(dir, d.name)] : []));
}

/** The relative modules `file` loads when it is evaluated, as .ts paths. */
function runtimeImports(file: string, text: string): string[] {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const out: string[] = [];
  const stmt = /^\s*(?:import|export)\s+(type\s+)?([^'";]*?)\s*from\s*['"]([^'"]+)['"]|^\s*import\s*['"]([^'"]+)['"]/gm;
  for (const m of code.matchAll(stmt)) {
    const spec = m[3] ?? m[4]!;
    if (m[1]) continue; // import type / export type
    const names = /^\{([\s\S]*)\}$/.exec((m[2] ?? '').trim());
    // `import { type A, type B } from`: every name a type, the whole import is erased
    if (names && names[1]!.split(',').map((s) => s.trim()).filter(Boolean).every((s) => s.startsWith('type '))) continue;
    if (!spec.startsWith('.')) continue; // node: builtins and packages cannot import src/
    out.push(resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
  }
  return out;
}

/** Tarjan's strongly connected components of more than one module (or a self-import). */
function cycles(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(scc.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

describe('import graph', () => {
  it('reads the edges TypeScript keeps: value imports and re-exports, multi-line ones; not type-only ones', () => {
    const f = '/p/src/a.ts';
    const text = [
      "import { x } from './b.js';",
      "import type { T } from './c.js';",
      "import { type U, type V } from './d.js';",
      "import { type W, y } from './e.js';",
      'import {\n  z,\n  w,\n} from "./f.js";',
      "export { q } from '../g.js';",
      "export type { R } from './h.js';",
      "import './i.js';",
      "// import { no } from './j.js';",
      "import { readFileSync } from 'node:fs';",
    ].join('\n');
    expect(runtimeImports(f, text).map((p) => relative('/p', p))).toEqual(['src/b.ts', 'src/e.ts', 'src/f.ts', 'g.ts', 'src/i.ts']);
    expect(cycles(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['a']]]))).toEqual([['a', 'b', 'c']]);
    expect(cycles(new Map([['a', ['b']], ['b', []]]))).toEqual([]);
  });

  it('src/ has no import cycle (src/image\'s builtin → import → pull → builtin was one, cli/lifecycle ⇄ cli/oci another)', () => {
    const graph = new Map(sources(SRC).map((f) => [f, runtimeImports(f, readFileSync(f, 'utf8'))]));
    const bad = cycles(graph).map((scc) => scc.map((f) => relative(ROOT, f)).join(' ⇄ '));
    expect(bad).toEqual([]);
  });
});
