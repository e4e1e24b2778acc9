// `--format` templates, as docker's CLI takes them: a subset of Go's text/template
// (https://pkg.go.dev/text/template) plus docker's own functions (json, join, split, lower,
// upper, title, pad, truncate) and its `table` prefix, whose output goes through a Go
// tabwriter (minwidth 10, padding 3, as docker's formatter). docs/cli-format.md lists what
// is supported, what is refused, and the npm packages evaluated before writing this one.
//
// The parser builds a tree once; each row is an execution of it. A template is the user's
// own input, but it never reaches a shell or a path: it only selects and prints values.
import { UsageError } from '../errors.js';

/** A template that cannot be parsed or executed: names the flag, the template and the column. */
export class TemplateError extends UsageError {}

/** Row objects of ps/images/stats: a field they do not have is an error (docker's typed contexts), not `<no value>`. */
const STRICT = Symbol('strict row');

/** A row of a listing: its keys are the fields `{{.Name}}` reads, in `{{json .}}` order (sorted, as docker's map). */
export function row<T extends Record<string, unknown>>(fields: T): T {
  const sorted = Object.fromEntries(Object.entries(fields).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) as T;
  Object.defineProperty(sorted, STRICT, { value: true, enumerable: false });
  return sorted;
}

const isStrict = (v: unknown): boolean => typeof v === 'object' && v !== null && (v as Record<symbol, unknown>)[STRICT] === true;

// ---------------------------------------------------------------- lexer and parser

type Arg =
  | { k: 'field'; chain: string[]; pos: number } // .A.B ('.' alone: chain [])
  | { k: 'var'; name: string; chain: string[]; pos: number } // $ or $x, maybe .A.B
  | { k: 'ident'; name: string; pos: number }
  | { k: 'lit'; value: unknown; pos: number }
  | { k: 'sub'; pipe: Pipe; chain: string[]; pos: number };
interface Cmd {
  args: Arg[];
  pos: number;
}
interface Pipe {
  decl: string[];
  cmds: Cmd[];
  pos: number;
  src: string;
}
type Node =
  | { k: 'text'; text: string }
  | { k: 'action'; pipe: Pipe }
  | { k: 'if' | 'with'; pipe: Pipe; list: Node[]; elseList: Node[] }
  | { k: 'range'; pipe: Pipe; list: Node[]; elseList: Node[] };

interface Tok {
  t: 'field' | 'var' | 'ident' | 'str' | 'num' | 'pipe' | 'lparen' | 'rparen' | 'decl' | 'comma' | 'dotchain';
  v: string;
  pos: number;
}

/** Column (1-based) of an offset, and the line when the template has several. */
function where(src: string, pos: number): string {
  const before = src.slice(0, pos);
  const line = before.split('\n').length;
  const col = pos - before.lastIndexOf('\n');
  return line > 1 ? `line ${line}, column ${col}` : `column ${col}`;
}

class Parser {
  constructor(
    private readonly src: string,
    private readonly flag: string,
  ) {}

  fail(pos: number, msg: string): never {
    throw new TemplateError(`${this.flag} ${JSON.stringify(this.src)}: ${where(this.src, pos)}: ${msg}`);
  }

  /** Splits text from actions, applying the `{{- ` and ` -}}` trim markers. */
  private split(): ({ k: 'text'; text: string } | { k: 'act'; body: string; start: number })[] {
    const s = this.src;
    const out: ({ k: 'text'; text: string } | { k: 'act'; body: string; start: number })[] = [];
    let i = 0;
    let trimNext = false;
    while (i <= s.length) {
      const open = s.indexOf('{{', i);
      let text = open < 0 ? s.slice(i) : s.slice(i, open);
      if (trimNext) text = text.replace(/^\s+/, '');
      trimNext = false;
      if (open < 0) {
        if (text) out.push({ k: 'text', text });
        break;
      }
      let start = open + 2;
      if (/^-[ \t\r\n]/.test(s.slice(start, start + 2))) {
        text = text.replace(/\s+$/, '');
        start += 1;
      }
      if (text) out.push({ k: 'text', text });
      const close = this.findClose(start, open);
      let end = close;
      if (/[ \t\r\n]-$/.test(s.slice(close - 2, close))) {
        end = close - 1;
        trimNext = true;
      }
      out.push({ k: 'act', body: s.slice(start, end), start });
      i = close + 2;
    }
    return out;
  }

  /** The `}}` closing an action opened at `open`, skipping quoted strings and comments. */
  private findClose(from: number, open: number): number {
    const s = this.src;
    let i = from;
    while (i < s.length) {
      const c = s[i]!;
      if (c === '"' || c === '`' || c === "'") {
        const q = c;
        i++;
        while (i < s.length && s[i] !== q) {
          if (s[i] === '\\' && q !== '`') i++;
          if (s[i] === '\n' && q !== '`') this.fail(i, 'unterminated quoted string');
          i++;
        }
        if (i >= s.length) this.fail(from, 'unterminated quoted string');
        i++;
        continue;
      }
      if (s.startsWith('/*', i)) {
        const e = s.indexOf('*/', i + 2);
        if (e < 0) this.fail(i, 'unclosed comment');
        i = e + 2;
        continue;
      }
      if (s.startsWith('}}', i)) return i;
      i++;
    }
    return this.fail(open, 'unclosed action: "{{" without "}}"');
  }

  private lex(body: string, base: number): Tok[] {
    const toks: Tok[] = [];
    let i = 0;
    const ident = /[A-Za-z_][A-Za-z0-9_]*/y;
    while (i < body.length) {
      const c = body[i]!;
      const pos = base + i;
      if (/\s/.test(c)) {
        i++;
        continue;
      }
      if (c === '|') toks.push({ t: 'pipe', v: c, pos }), i++;
      else if (c === '(') toks.push({ t: 'lparen', v: c, pos }), i++;
      else if (c === ')') {
        toks.push({ t: 'rparen', v: c, pos });
        i++;
        // (pipeline).Field: a chain right after the parenthesis
        const m = /^(\.[A-Za-z_][A-Za-z0-9_]*)+/.exec(body.slice(i));
        if (m) toks.push({ t: 'dotchain', v: m[0], pos: base + i }), (i += m[0].length);
      } else if (c === ',') toks.push({ t: 'comma', v: c, pos }), i++;
      else if (body.startsWith(':=', i)) toks.push({ t: 'decl', v: ':=', pos }), (i += 2);
      else if (c === '=') this.fail(pos, 'assignment to a variable ("=") is not supported; declare with ":="');
      else if (c === '.') {
        const m = /^\.([A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*)?/.exec(body.slice(i))!;
        if (/^\.[0-9]/.test(body.slice(i))) {
          const n = /^\.[0-9]+([eE][-+]?[0-9]+)?/.exec(body.slice(i))!;
          toks.push({ t: 'num', v: n[0], pos });
          i += n[0].length;
          continue;
        }
        toks.push({ t: 'field', v: m[0], pos });
        i += m[0].length;
      } else if (c === '$') {
        const m = /^\$[A-Za-z0-9_]*((\.[A-Za-z_][A-Za-z0-9_]*)*)/.exec(body.slice(i))!;
        toks.push({ t: 'var', v: m[0], pos });
        i += m[0].length;
      } else if (c === '"') {
        let j = i + 1;
        while (j < body.length && body[j] !== '"') j += body[j] === '\\' ? 2 : 1;
        const raw = body.slice(i, j + 1);
        let v: string;
        try {
          v = JSON.parse(raw.replace(/\\x([0-9a-fA-F]{2})/g, '\\u00$1')) as string;
        } catch {
          this.fail(pos, `bad string literal ${raw}`);
        }
        toks.push({ t: 'str', v, pos });
        i = j + 1;
      } else if (c === '`') {
        const j = body.indexOf('`', i + 1);
        toks.push({ t: 'str', v: body.slice(i + 1, j), pos });
        i = j + 1;
      } else if (c === "'") this.fail(pos, 'character constants are not supported; use a "string"');
      else if (/[-+0-9]/.test(c)) {
        const m = /^[-+]?(0[xX][0-9a-fA-F]+|[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?)/.exec(body.slice(i));
        if (!m) this.fail(pos, `unexpected ${JSON.stringify(c)}`);
        toks.push({ t: 'num', v: m[0], pos });
        i += m[0].length;
      } else {
        ident.lastIndex = i;
        const m = ident.exec(body);
        if (!m) this.fail(pos, `unexpected ${JSON.stringify(c)} in action`);
        toks.push({ t: 'ident', v: m[0], pos });
        i += m[0].length;
      }
    }
    return toks;
  }

  parse(): Node[] {
    const items = this.split();
    let at = 0;
    const list = (ends: string[]): { nodes: Node[]; end: string; endToks: Tok[]; endPos: number } => {
      const nodes: Node[] = [];
      while (at < items.length) {
        const it = items[at++]!;
        if (it.k === 'text') {
          nodes.push(it);
          continue;
        }
        const body = it.body.trim();
        if (body.startsWith('/*')) {
          if (!body.endsWith('*/')) this.fail(it.start, 'a comment must fill its action: {{/* ... */}}');
          continue;
        }
        const toks = this.lex(it.body, it.start);
        if (toks.length === 0) this.fail(it.start, 'missing value for command');
        const head = toks[0]!;
        const kw = head.t === 'ident' ? head.v : '';
        if (kw === 'end' || kw === 'else') {
          if (!ends.includes(kw)) this.fail(head.pos, `unexpected {{${kw}}}`);
          return { nodes, end: kw, endToks: toks.slice(1), endPos: head.pos };
        }
        if (kw === 'if' || kw === 'with' || kw === 'range') nodes.push(this.block(kw, toks.slice(1), head.pos, list));
        else if (['define', 'template', 'block', 'break', 'continue'].includes(kw)) this.fail(head.pos, `{{${kw}}} is not supported (docs/cli-format.md lists the subset)`);
        else nodes.push({ k: 'action', pipe: this.pipeline(toks, it.start, true) });
      }
      if (ends.length) this.fail(this.src.length, `unexpected end of template: missing {{end}}`);
      return { nodes, end: '', endToks: [], endPos: this.src.length };
    };
    return list([]).nodes;
  }

  private block(kw: 'if' | 'with' | 'range', toks: Tok[], pos: number, list: (ends: string[]) => { nodes: Node[]; end: string; endToks: Tok[]; endPos: number }): Node {
    if (toks.length === 0) this.fail(pos, `missing value for ${kw}`);
    const pipe = this.pipeline(toks, pos, kw !== 'if');
    if (pipe.decl.length > (kw === 'range' ? 2 : 1)) this.fail(pos, `too many declarations in ${kw}`);
    const body = list(['end', 'else']);
    let elseList: Node[] = [];
    if (body.end === 'else') {
      if (body.endToks.length) {
        // {{else if ...}}: a nested if that shares our {{end}}
        if (body.endToks[0]!.t !== 'ident' || body.endToks[0]!.v !== kw || kw !== 'if') this.fail(body.endPos, `{{else ${body.endToks.map((t) => t.v).join(' ')}}}: only {{else if}} is supported`);
        elseList = [this.block('if', body.endToks.slice(1), body.endToks[0]!.pos, list)];
        return { k: kw, pipe, list: body.nodes, elseList };
      }
      const rest = list(['end']);
      if (rest.endToks.length) this.fail(rest.endPos, 'unexpected words after end');
      elseList = rest.nodes;
    } else if (body.endToks.length) this.fail(body.endPos, 'unexpected words after end');
    return { k: kw, pipe, list: body.nodes, elseList };
  }

  private pipeline(toks: Tok[], pos: number, allowDecl: boolean): Pipe {
    let i = 0;
    const decl: string[] = [];
    // $x := ... / $i, $v := ...
    const declEnd = toks.findIndex((t) => t.t === 'decl');
    if (declEnd >= 0 && toks.slice(0, declEnd).every((t) => t.t === 'var' || t.t === 'comma')) {
      if (!allowDecl) this.fail(toks[declEnd]!.pos, 'a declaration is not allowed here');
      for (const t of toks.slice(0, declEnd)) if (t.t === 'var') decl.push(t.v);
      i = declEnd + 1;
    }
    const start = toks[i]?.pos ?? pos;
    const [p, next] = this.cmds(toks, i, pos);
    if (next < toks.length) this.fail(toks[next]!.pos, `unexpected ${JSON.stringify(toks[next]!.v)}`);
    return { ...p, decl, pos: start, src: this.src };
  }

  private cmds(toks: Tok[], from: number, pos: number): [{ cmds: Cmd[] }, number] {
    const cmds: Cmd[] = [];
    let i = from;
    for (;;) {
      const args: Arg[] = [];
      const cpos = toks[i]?.pos ?? pos;
      while (i < toks.length && toks[i]!.t !== 'pipe' && toks[i]!.t !== 'rparen') {
        const t = toks[i++]!;
        if (t.t === 'lparen') {
          const [sub, next] = this.cmds(toks, i, t.pos);
          if (toks[next]?.t !== 'rparen') this.fail(t.pos, 'unclosed "("');
          i = next + 1;
          let chain: string[] = [];
          if (toks[i]?.t === 'dotchain') chain = toks[i++]!.v.slice(1).split('.');
          args.push({ k: 'sub', pipe: { ...sub, decl: [], pos: t.pos, src: this.src }, chain, pos: t.pos });
        } else if (t.t === 'field') args.push({ k: 'field', chain: t.v === '.' ? [] : t.v.slice(1).split('.'), pos: t.pos });
        else if (t.t === 'var') {
          const [name, ...chain] = t.v.split('.');
          args.push({ k: 'var', name: name!, chain, pos: t.pos });
        } else if (t.t === 'str') args.push({ k: 'lit', value: t.v, pos: t.pos });
        else if (t.t === 'num') args.push({ k: 'lit', value: Number(t.v), pos: t.pos });
        else if (t.t === 'ident') {
          if (t.v === 'true' || t.v === 'false') args.push({ k: 'lit', value: t.v === 'true', pos: t.pos });
          else if (t.v === 'nil') args.push({ k: 'lit', value: null, pos: t.pos });
          else {
            if (!(t.v in FUNCS)) this.fail(t.pos, `function ${JSON.stringify(t.v)} not defined (functions: ${Object.keys(FUNCS).join(', ')})`);
            args.push({ k: 'ident', name: t.v, pos: t.pos });
          }
        } else this.fail(t.pos, `unexpected ${JSON.stringify(t.v)}`);
      }
      if (args.length === 0) this.fail(cpos, toks[i]?.t === 'pipe' || cmds.length ? 'missing command in pipeline' : 'missing value for command');
      cmds.push({ args, pos: cpos });
      if (toks[i]?.t !== 'pipe') return [{ cmds }, i];
      i++;
    }
  }
}

// ---------------------------------------------------------------- values and functions

/** Go's truth: false, 0, nil, and empty strings, lists and maps are false. */
function truth(v: unknown): boolean {
  if (v === undefined || v === null || v === false || v === 0 || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return Object.keys(v).length > 0;
  return true;
}

/** Go's %v of a value as text/template prints it (maps sorted by key, `<no value>` for a missing one). */
export function printValue(v: unknown): string {
  if (v === undefined) return '<no value>';
  if (v === null) return '<nil>';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (Array.isArray(v)) return `[${v.map((x) => (x === undefined || x === null ? '<nil>' : printValue(x))).join(' ')}]`;
  if (typeof v === 'function') return '<func>';
  const o = v as Record<string, unknown>;
  return `map[${Object.keys(o)
    .sort()
    .map((k) => `${k}:${o[k] === null || o[k] === undefined ? '<nil>' : printValue(o[k])}`)
    .join(' ')}]`;
}

/**
 * docker's `json` function: its encoder does not escape HTML, but a listing row (docker's
 * contexts marshal themselves with json.Marshal) comes out with <, > and & as \u003c… .
 */
function json(v: unknown): string {
  const s = JSON.stringify(v === undefined ? null : v, (_k, x: unknown) => (typeof x === 'function' ? undefined : x)) ?? 'null';
  return isStrict(v) ? s.replace(/[<>&]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`) : s;
}

type Fn = (...a: unknown[]) => unknown;

function cmp(name: string, a: unknown, b: unknown): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  if (typeof a === 'boolean' && typeof b === 'boolean' && (name === 'eq' || name === 'ne')) return a === b ? 0 : 1;
  throw new Error(`${name}: incompatible types for comparison (${kind(a)} and ${kind(b)})`);
}

function kind(v: unknown): string {
  return v === null || v === undefined ? 'nil' : Array.isArray(v) ? 'list' : typeof v === 'object' ? 'map' : typeof v;
}

function need(name: string, a: unknown[], n: number, max = n): void {
  if (a.length < n || a.length > max) throw new Error(`wrong number of args for ${name}: want ${n === max ? n : `${n}-${max}`} got ${a.length}`);
}

function str(name: string, v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  throw new Error(`${name}: expected a string, got ${kind(v)}`);
}

/** Go's fmt verbs a template needs: %s %v %d %q %t %x %%, with a width and `-`. */
function printf(format: unknown, ...args: unknown[]): string {
  let n = 0;
  return str('printf', format).replace(/%([-0]?)(\d*)([svdqtx%])/g, (_m, flag: string, width: string, verb: string) => {
    if (verb === '%') return '%';
    if (n >= args.length) return `%!${verb}(MISSING)`;
    const a = args[n++];
    let s: string;
    if (verb === 'q') s = JSON.stringify(typeof a === 'string' ? a : printValue(a));
    else if (verb === 'd') s = typeof a === 'number' && Number.isInteger(a) ? String(a) : `%!d(${kind(a)}=${printValue(a)})`;
    else if (verb === 'x') s = typeof a === 'number' ? a.toString(16) : Buffer.from(printValue(a)).toString('hex');
    else s = printValue(a);
    const w = Number(width || 0);
    return flag === '-' ? s.padEnd(w) : s.padStart(w, flag === '0' ? '0' : ' ');
  });
}

const FUNCS: Record<string, Fn> = {
  // docker's (github.com/docker/cli/templates)
  json: (...a) => (need('json', a, 1), json(a[0])),
  join: (...a) => {
    need('join', a, 2);
    if (!Array.isArray(a[0])) throw new Error(`join: expected a list, got ${kind(a[0])}`);
    return a[0].map((x) => printValue(x)).join(str('join', a[1]));
  },
  split: (...a) => (need('split', a, 2), str('split', a[0]).split(str('split', a[1]))),
  lower: (...a) => (need('lower', a, 1), str('lower', a[0]).toLowerCase()),
  upper: (...a) => (need('upper', a, 1), str('upper', a[0]).toUpperCase()),
  title: (...a) => (need('title', a, 1), str('title', a[0]).replace(/(^|[^\p{L}\p{N}_'])(\p{L})/gu, (_m, p: string, c: string) => p + c.toUpperCase())),
  pad: (...a) => (need('pad', a, 3), ' '.repeat(Number(a[1]) || 0) + str('pad', a[0]) + ' '.repeat(Number(a[2]) || 0)),
  truncate: (...a) => {
    need('truncate', a, 2);
    const s = [...str('truncate', a[0])];
    const n = Number(a[1]);
    return s.length > n ? s.slice(0, Math.max(0, n)).join('') : s.join('');
  },
  // Go's builtins
  and: (...a) => {
    if (a.length === 0) throw new Error('wrong number of args for and: want at least 1 got 0');
    for (const x of a) if (!truth(x)) return x;
    return a[a.length - 1];
  },
  or: (...a) => {
    if (a.length === 0) throw new Error('wrong number of args for or: want at least 1 got 0');
    for (const x of a) if (truth(x)) return x;
    return a[a.length - 1];
  },
  not: (...a) => (need('not', a, 1), !truth(a[0])),
  len: (...a) => {
    need('len', a, 1);
    const v = a[0];
    if (typeof v === 'string') return Buffer.byteLength(v);
    if (Array.isArray(v)) return v.length;
    if (v && typeof v === 'object') return Object.keys(v).length;
    throw new Error(`len of ${kind(v)}`);
  },
  index: (...a) => {
    if (a.length === 0) throw new Error('wrong number of args for index: want at least 1 got 0');
    let v = a[0];
    for (const k of a.slice(1)) {
      if (Array.isArray(v) || typeof v === 'string') {
        if (typeof k !== 'number' || !Number.isInteger(k)) throw new Error(`index: cannot index a list with ${kind(k)}`);
        if (k < 0 || k >= v.length) throw new Error(`index: index out of range: ${k}`);
        v = typeof v === 'string' ? v.charCodeAt(k) : v[k];
      } else if (v && typeof v === 'object') {
        if (typeof k !== 'string') throw new Error(`index: cannot index a map with ${kind(k)}`);
        // Go: a missing key gives the zero value (an empty label prints as nothing)
        v = Object.prototype.hasOwnProperty.call(v, k) ? (v as Record<string, unknown>)[k] : '';
      } else if (v === null || v === undefined) throw new Error('index of untyped nil');
      else throw new Error(`can't index item of type ${kind(v)}`);
    }
    return v;
  },
  eq: (...a) => {
    if (a.length < 2) throw new Error(`wrong number of args for eq: want at least 2 got ${a.length}`);
    return a.slice(1).some((b) => cmp('eq', a[0], b) === 0);
  },
  ne: (...a) => (need('ne', a, 2), cmp('ne', a[0], a[1]) !== 0),
  lt: (...a) => (need('lt', a, 2), cmp('lt', a[0], a[1]) < 0),
  le: (...a) => (need('le', a, 2), cmp('le', a[0], a[1]) <= 0),
  gt: (...a) => (need('gt', a, 2), cmp('gt', a[0], a[1]) > 0),
  ge: (...a) => (need('ge', a, 2), cmp('ge', a[0], a[1]) >= 0),
  // Sprint: a space between operands when neither is a string
  print: (...a) => a.map((x, i) => (i > 0 && typeof x !== 'string' && typeof a[i - 1] !== 'string' ? ' ' : '') + printValue(x)).join(''),
  println: (...a) => a.map(printValue).join(' ') + '\n',
  printf: (...a) => {
    if (a.length === 0) throw new Error('wrong number of args for printf: want at least 1 got 0');
    return printf(a[0], ...a.slice(1));
  },
};

// ---------------------------------------------------------------- execution

class ExecError extends Error {
  constructor(
    readonly pos: number,
    readonly at: string,
    msg: string,
  ) {
    super(msg);
  }
}

/** The source text of an argument, for `at <.Foo>` in messages. */
function argText(src: string, a: Arg): string {
  if (a.k === 'sub') {
    let depth = 0;
    let i = a.pos;
    for (; i < src.length; i++) {
      if (src[i] === '(') depth++;
      else if (src[i] === ')' && --depth === 0) break;
    }
    return src.slice(a.pos, i + 1) + (a.chain.length ? `.${a.chain.join('.')}` : '');
  }
  const m = /^[^\s|()}]+/.exec(src.slice(a.pos));
  return m ? m[0] : src.slice(a.pos, a.pos + 10);
}

class Exec {
  private vars: Map<string, unknown>[] = [];
  private out: string[] = [];
  constructor(private readonly root: unknown) {}

  run(nodes: Node[]): string {
    this.vars = [new Map([['$', this.root]])];
    this.out = [];
    this.list(nodes, this.root);
    return this.out.join('');
  }

  private list(nodes: Node[], dot: unknown): void {
    for (const n of nodes) this.node(n, dot);
  }

  private node(n: Node, dot: unknown): void {
    if (n.k === 'text') return void this.out.push(n.text);
    if (n.k === 'action') {
      const v = this.pipe(n.pipe, dot);
      if (n.pipe.decl.length === 0) this.out.push(printValue(v));
      return;
    }
    this.vars.push(new Map());
    try {
      if (n.k === 'if' || n.k === 'with') {
        const v = this.pipe(n.pipe, dot);
        if (truth(v)) this.list(n.list, n.k === 'with' ? v : dot);
        else this.list(n.elseList, dot);
        return;
      }
      const v = this.pipe({ ...n.pipe, decl: [] }, dot);
      const items: [unknown, unknown][] =
        v === undefined || v === null ? [] : Array.isArray(v) ? v.map((x, i) => [i, x]) : typeof v === 'object' ? Object.keys(v).sort().map((k) => [k, (v as Record<string, unknown>)[k]]) : typeof v === 'number' && Number.isInteger(v) ? Array.from({ length: Math.max(0, v) }, (_x, i) => [i, i]) : this.fail(n.pipe.pos, 'range', `range can't iterate over ${printValue(v)}`);
      if (items.length === 0) return this.list(n.elseList, dot);
      for (const [k, x] of items) {
        const scope = this.vars[this.vars.length - 1]!;
        if (n.pipe.decl.length === 1) scope.set(n.pipe.decl[0]!, x);
        if (n.pipe.decl.length === 2) scope.set(n.pipe.decl[0]!, k), scope.set(n.pipe.decl[1]!, x);
        this.list(n.list, x);
      }
    } finally {
      this.vars.pop();
    }
  }

  private fail(pos: number, at: string, msg: string): never {
    throw new ExecError(pos, at, msg);
  }

  private pipe(p: Pipe, dot: unknown): unknown {
    let v: unknown;
    let piped = false;
    for (const c of p.cmds) {
      v = this.cmd(p.src, c, dot, piped ? [v] : []);
      piped = true;
    }
    if (p.decl.length) this.vars[this.vars.length - 1]!.set(p.decl[0]!, v);
    return v;
  }

  private lookupVar(src: string, a: { name: string; pos: number }): unknown {
    for (let i = this.vars.length - 1; i >= 0; i--) if (this.vars[i]!.has(a.name)) return this.vars[i]!.get(a.name);
    return this.fail(a.pos, a.name, `undefined variable: ${a.name}`);
  }

  private cmd(src: string, c: Cmd, dot: unknown, piped: unknown[]): unknown {
    const [head, ...rest] = c.args;
    const at = argText(src, head!);
    const call = (fn: Fn, name: string): unknown => {
      const args = [...rest.map((a) => this.arg(src, a, dot)), ...piped];
      try {
        return fn(...args);
      } catch (e) {
        if (e instanceof ExecError) throw e;
        return this.fail(head!.pos, at, `error calling ${name}: ${(e as Error).message}`);
      }
    };
    if (head!.k === 'ident') return call(FUNCS[head!.name]!, head!.name);
    if (head!.k === 'field' && head!.chain.length) {
      // a method of a row (docker's {{.Label "k"}}): the last field is called with the arguments
      const parent = this.chain(src, dot, head!.chain.slice(0, -1), head!.pos, at);
      const v = this.field(parent, head!.chain[head!.chain.length - 1]!, head!.pos, at);
      if (typeof v === 'function') return call(v.bind(parent) as Fn, head!.chain[head!.chain.length - 1]!);
      if (rest.length || piped.length) this.fail(head!.pos, at, `${at} is not a method but has arguments`);
      return v;
    }
    if (rest.length || piped.length) this.fail(head!.pos, at, `can't give argument to non-function ${at}`);
    return this.arg(src, head!, dot);
  }

  private arg(src: string, a: Arg, dot: unknown): unknown {
    const at = argText(src, a);
    switch (a.k) {
      case 'lit':
        return a.value;
      case 'field':
        return this.chain(src, dot, a.chain, a.pos, at);
      case 'var':
        return this.chain(src, this.lookupVar(src, a), a.chain, a.pos, at);
      case 'sub':
        return this.chain(src, this.pipe(a.pipe, dot), a.chain, a.pos, at);
      case 'ident': {
        // a function as an argument is called with no arguments (Go: `{{len (json .)}}` needs parens, `and` alone errors)
        try {
          return FUNCS[a.name]!();
        } catch (e) {
          return this.fail(a.pos, at, `error calling ${a.name}: ${(e as Error).message}`);
        }
      }
    }
  }

  private chain(src: string, v: unknown, chain: string[], pos: number, at: string): unknown {
    let cur = v;
    for (const f of chain) {
      cur = this.field(cur, f, pos, at);
      if (typeof cur === 'function') cur = (cur as Fn)();
    }
    return cur;
  }

  private field(v: unknown, f: string, pos: number, at: string): unknown {
    if (v === null || v === undefined) return this.fail(pos, at, `nil pointer evaluating .${f}`);
    if (typeof v !== 'object' || Array.isArray(v)) return this.fail(pos, at, `can't evaluate field ${f} in type ${kind(v)}`);
    if (Object.prototype.hasOwnProperty.call(v, f)) return (v as Record<string, unknown>)[f];
    if (isStrict(v)) return this.fail(pos, at, `can't evaluate field ${f} (fields: ${Object.keys(v).join(', ')})`);
    // docker runs templates with missingkey=error: a misspelt field is an error, not <no value>
    return this.fail(pos, at, `map has no entry for key ${JSON.stringify(f)}`);
  }
}

// ---------------------------------------------------------------- the public face

export interface Template {
  /** one execution on `data`; a failure is a TemplateError naming the flag and the column */
  execute(data: unknown): string;
}

/** Parses a Go-style template; errors name `flag`, the template and the column. */
export function parseTemplate(src: string, flag = '--format'): Template {
  const nodes = new Parser(src, flag).parse();
  return {
    execute(data: unknown): string {
      try {
        return new Exec(data).run(nodes);
      } catch (e) {
        if (!(e instanceof ExecError)) throw e;
        throw new TemplateError(`${flag} ${JSON.stringify(src)}: ${where(src, e.pos)}: executing at <${e.at}>: ${e.message}`);
      }
    },
  };
}

/** docker's formatter turns the two-character escapes `\t` and `\n` of a --format into tabs and newlines. */
export function unescapeFormat(f: string): string {
  return f.replace(/\\t|\\n/g, (m) => (m === '\\t' ? '\t' : '\n'));
}

/**
 * Go's text/tabwriter (minwidth, tabwidth 1, padding, ' ', flags 0), as docker's `table`
 * output: a tab ends a cell, a column block is the run of lines that have that cell, and
 * each cell of a block is padded to the widest plus `padding` (at least `minwidth`). The
 * last cell of a line is not in a column.
 */
export function tabwriter(text: string, minwidth = 10, padding = 3): string {
  const trailingNewline = text.endsWith('\n');
  const lines = (trailingNewline ? text.slice(0, -1) : text).split('\n').map((l) => l.split('\t'));
  const width = (s: string) => [...s].length;
  const out: string[] = [];
  const widths: number[] = [];
  const write = (from: number, to: number) => {
    for (let i = from; i < to; i++) out.push(lines[i]!.map((c, j) => (j < widths.length ? c + ' '.repeat(Math.max(0, widths[j]! - width(c))) : c)).join(''));
  };
  const format = (line0: number, line1: number): void => {
    const column = widths.length;
    for (let t = line0; t < line1; t++) {
      if (column >= lines[t]!.length - 1) continue;
      write(line0, t);
      line0 = t;
      let w = minwidth;
      for (; t < line1; t++) {
        const line = lines[t]!;
        if (column >= line.length - 1) break;
        w = Math.max(w, width(line[column]!) + padding);
      }
      widths.push(w);
      format(line0, t);
      widths.pop();
      line0 = t;
    }
    write(line0, line1);
  };
  format(0, lines.length);
  return out.join('\n') + (trailingNewline ? '\n' : '');
}

/**
 * A listing in docker's way: `table TEMPLATE` prints a header row (the template executed on
 * `headers`) and the rows through the tabwriter; any other template prints one line a row.
 * `table` alone (or an empty format) is the default table, which the caller prints itself
 * (returns undefined).
 */
export function formatRows(format: string, rows: unknown[], headers: Record<string, unknown>, flag = '--format'): string | undefined {
  // docker: an empty --format is the default table, as `table` alone is
  if (format.trim() === '') return undefined;
  const isTable = format.startsWith('table');
  const body = unescapeFormat((isTable ? format.slice(5) : format).replace(/^ +| +$/g, ''));
  if (isTable && body === '') return undefined;
  const t = parseTemplate(body, flag);
  const lines = rows.map((r) => t.execute(r) + '\n');
  if (!isTable) return lines.join('');
  return tabwriter(t.execute(row(headers)) + '\n' + lines.join(''));
}

/** go-units HumanDuration, as docker's "Up 3 seconds" and "2 minutes ago". */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < 1) return 'Less than a second';
  if (seconds === 1) return '1 second';
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.floor(ms / 60_000);
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.floor(ms / 3_600_000 + 0.5);
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.floor(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.floor(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24 / 30)} months`;
  return `${Math.floor(ms / 3_600_000 / 24 / 365)} years`;
}

/** Go's time.Time.String() in UTC, as docker's CreatedAt: `2006-01-02 15:04:05 +0000 UTC`. */
export function goTime(iso: string | null | undefined): string {
  const t = iso ? Date.parse(iso) : NaN;
  if (!Number.isFinite(t)) return '';
  return new Date(t).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' +0000 UTC');
}

/** docker's Ellipsis: at most `n` characters, the last one "…" when cut. */
export function ellipsis(s: string, n: number): string {
  const r = [...s];
  return r.length > n ? r.slice(0, n - 1).join('') + '…' : s;
}

/** go-units HumanSizeWithPrecision (decimal units), as docker's image sizes: 1.98MB, 1.982MB. */
export function humanSize(n: number, precision = 3): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB', 'ZB', 'YB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) (n /= 1000), i++;
  return `${Number(n.toPrecision(precision))}${units[i]}`;
}
