// How a lab is shown: the commands as a student types them with what they printed, the
// kernel's answers side by side, the verdict. --json and --tap for tests and CI.
import type { CommandRecord, Fact, LabResult } from './context.js';

function indent(text: string, max = 12): string {
  const lines = text.replace(/\n+$/, '').split('\n');
  const shown = lines.slice(0, max).map((l) => `    ${l.length > 160 ? l.slice(0, 157) + '...' : l}`);
  if (lines.length > max) shown.push(`    ... (${lines.length - max} more lines)`);
  return text.trim() ? shown.join('\n') + '\n' : '';
}

export function renderCommand(c: CommandRecord): string {
  const status = c.signal ? `  [${c.signal}]` : c.code !== null && c.code !== 0 ? `  [exit ${c.code}]` : '';
  return `  $ ${c.display}${status}\n${indent(c.stdout)}${indent(c.stderr)}`;
}

const show = (v: Fact | undefined) => (v === undefined ? '' : v === null ? '-' : String(v));

export function renderFacts(r: LabResult): string {
  const keys = [...new Set([...Object.keys(r.without.facts), ...Object.keys(r.with.facts)])];
  const rows = keys.map((k) => [k, show(r.without.facts[k]), show(r.with.facts[k])]);
  const cut = (s: string) => (s.length > 48 ? s.slice(0, 45) + '...' : s);
  const table = [['', 'without', 'with'], ...rows].map((row) => row.map(cut));
  const w = [0, 1, 2].map((i) => Math.max(...table.map((row) => row[i]!.length)));
  return table.map((row) => '  ' + row.map((c, i) => c.padEnd(w[i]!)).join('  │ ').trimEnd()).join('\n') + '\n';
}

export function renderHeader(r: Pick<LabResult, 'n' | 'title' | 'workshop' | 'cis'>): string {
  return `\n━━ Lab ${r.n}: ${r.title}\n   workshop: ${r.workshop}; CIS Docker Benchmark v1.2.0: ${r.cis}\n`;
}

export function renderVerdict(r: LabResult): string {
  const notes = r.notes.map((n) => `  · ${n}\n`).join('');
  return `\n  what the kernel said:\n${renderFacts(r)}${notes ? `\n${notes}` : ''}\n  verdict: ${r.verdict.toUpperCase()} — ${r.why}\n`;
}

export function renderTap(results: LabResult[]): string {
  const out = ['TAP version 13', `1..${results.length}`];
  results.forEach((r, i) => {
    const ok = r.verdict === 'pass' || r.verdict === 'unavailable';
    out.push(`${ok ? 'ok' : 'not ok'} ${i + 1} - lab ${r.n} ${r.name}: ${r.why.replace(/#/g, '')}${r.verdict === 'unavailable' ? ' # SKIP unavailable on this host' : ''}`);
    out.push('  ---', `  verdict: ${r.verdict}`, `  without: ${JSON.stringify(r.without.facts)}`, `  with: ${JSON.stringify(r.with.facts)}`, '  ...');
  });
  return out.join('\n') + '\n';
}
