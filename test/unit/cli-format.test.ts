import { describe, expect, it } from 'vitest';
import { ellipsis, formatRows, goTime, humanDuration, humanSize, parseTemplate, printValue, row, tabwriter, TemplateError, unescapeFormat } from '../../src/cli/format.js';
import { impliesAll, matches, parseFilters, type Filterable } from '../../src/cli/ps-filter.js';
import { killArgs } from '../../src/cli/lifecycle.js';
import { labelsOf, withImageLabels } from '../../src/cli/flags.js';
import { UsageError } from '../../src/errors.js';

const run = (t: string, data: unknown) => parseTemplate(t).execute(data);
const fails = (t: string, data: unknown = {}) => {
  try {
    run(t, data);
  } catch (e) {
    expect(e).toBeInstanceOf(TemplateError);
    expect((e as UsageError).exitCode).toBe(125);
    return (e as Error).message;
  }
  return expect.fail(`${t} did not fail`);
};

const inspect = {
  Id: 'abc',
  Name: 'web',
  State: { Status: 'running', Pid: 4242, Running: true, ExitCode: null },
  Config: { Labels: { app: 'web', 'com.example.tier': 'front' }, Env: ['A=1', 'B=2'], Cmd: ['sh', '-c', 'x'] },
  Mounts: [],
};

describe('Go template subset', () => {
  it('prints fields, nested fields and the dot', () => {
    expect(run('{{.State.Pid}}', inspect)).toBe('4242');
    expect(run('pid={{ .State.Pid }} name={{.Name}}', inspect)).toBe('pid=4242 name=web');
    expect(run('{{.}}', 'x')).toBe('x');
  });

  it('prints values as Go does: maps sorted, lists in brackets, null as <nil>; a missing key is an error (docker: missingkey=error)', () => {
    expect(run('{{.Config.Labels}}', inspect)).toBe('map[app:web com.example.tier:front]');
    expect(run('{{.Config.Env}}', inspect)).toBe('[A=1 B=2]');
    expect(fails('{{.Config.Nope}}', inspect)).toMatch(/column 3: executing at <\.Config\.Nope>: map has no entry for key "Nope"/);
    expect(run('{{.State.ExitCode}}', inspect)).toBe('<nil>');
    expect(run('{{.State.Running}}', inspect)).toBe('true');
  });

  it('json, index, len, join, pipelines and parenthesised pipelines', () => {
    expect(JSON.parse(run('{{json .Config}}', inspect))).toEqual(inspect.Config);
    expect(run('{{json .Mounts}}', inspect)).toBe('[]');
    expect(run('{{.Config.Labels | json}}', inspect)).toBe('{"app":"web","com.example.tier":"front"}');
    expect(run('{{index .Config.Labels "com.example.tier"}}', inspect)).toBe('front');
    expect(run('{{index .Config.Labels "absent"}}', inspect)).toBe('');
    expect(run('{{index .Config.Env 1}}', inspect)).toBe('B=2');
    expect(run('{{len .Config.Env}}', inspect)).toBe('2');
    expect(run('{{join .Config.Cmd " "}}', inspect)).toBe('sh -c x');
    expect(run('{{.Name | upper | printf "[%s]"}}', inspect)).toBe('[WEB]');
    expect(run('{{(index .Config.Env 0) | lower}}', inspect)).toBe('a=1');
    expect(fails('{{(json .State).x}}', { State: 1 })).toMatch(/executing at <\(json \.State\)\.x>: can't evaluate field x in type string/);
  });

  it('range over lists and maps (with variables), if/else if/else, with, variables', () => {
    expect(run('{{range .Config.Env}}<{{.}}>{{end}}', inspect)).toBe('<A=1><B=2>');
    expect(run('{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}', inspect)).toBe('app=web;com.example.tier=front;');
    expect(run('{{range $i, $e := .Config.Env}}{{$i}}:{{$e}} {{end}}', inspect)).toBe('0:A=1 1:B=2 ');
    expect(run('{{range .Mounts}}m{{else}}none{{end}}', inspect)).toBe('none');
    expect(run('{{range .Config.Env}}{{$.Name}}{{end}}', inspect)).toBe('webweb');
    expect(run('{{if eq .State.Status "exited"}}x{{else if .State.Running}}up{{else}}?{{end}}', inspect)).toBe('up');
    expect(run('{{if and .State.Running (gt .State.Pid 1)}}yes{{end}}', inspect)).toBe('yes');
    expect(run('{{if not .Mounts}}empty{{end}}', inspect)).toBe('empty');
    expect(run('{{with .State}}{{.Pid}}{{end}}', inspect)).toBe('4242');
    expect(run('{{with .Mounts}}x{{else}}no mounts{{end}}', inspect)).toBe('no mounts');
    expect(run('{{$n := .Name}}{{range .Config.Env}}{{$n}}{{end}}', inspect)).toBe('webweb');
  });

  it('trims around {{- and -}}, skips comments, and takes raw strings', () => {
    expect(run('a  {{- .Name -}}  b', inspect)).toBe('awebb');
    expect(run('a{{/* a comment */}}b', inspect)).toBe('ab');
    expect(run('{{index .Config.Labels `app`}}', inspect)).toBe('web');
  });

  it('docker functions: split, title, pad, truncate, printf verbs', () => {
    expect(run('{{split "a,b" ","}}', {})).toBe('[a b]');
    expect(run('{{title "hello world"}}', {})).toBe('Hello World');
    expect(run('{{pad "x" 1 2}}|', {})).toBe(' x  |');
    expect(run('{{truncate "abcdef" 3}}', {})).toBe('abc');
    expect(run('{{printf "%-4s|%3d|%q|%v" "a" 7 "q" .}}', [1])).toBe('a   |  7|"q"|[1]');
  });

  it('calls a row\'s methods with arguments ({{.Label "k"}})', () => {
    const r = row({ ID: 'x', Label: (k: unknown) => (k === 'a' ? 'A' : '') });
    expect(run('{{.Label "a"}}/{{.Label "b"}}', r)).toBe('A/');
  });

  it('parse errors name --format, the template and the column', () => {
    expect(fails('{{.ID')).toMatch(/^--format "\{\{\.ID": column 1: unclosed action/);
    expect(fails('ok {{if .A}}x')).toMatch(/missing \{\{end\}\}/);
    expect(fails('{{.A | }}')).toMatch(/column 3: missing command in pipeline/);
    expect(fails('{{nosuch .A}}')).toMatch(/column 3: function "nosuch" not defined/);
    expect(fails('{{end}}')).toMatch(/unexpected \{\{end\}\}/);
    expect(fails('{{template "x"}}')).toMatch(/\{\{template\}\} is not supported/);
    expect(fails('{{"unterminated}}')).toMatch(/unterminated quoted string/);
    expect(fails('{{$x = 1}}')).toMatch(/\("="\) is not supported/);
    expect(fails('a\n{{)}}')).toMatch(/line 2, column 3/);
    expect(() => parseTemplate('{{.X}}', '-f')).not.toThrow();
    try {
      parseTemplate('{{.X', '-f');
    } catch (e) {
      expect((e as Error).message).toMatch(/^-f /);
    }
  });

  it('execution errors name the action: unknown fields of a row, bad calls, undefined variables', () => {
    const r = row({ ID: 'x', Names: 'n' });
    expect(fails('{{.ID}} {{.Nope}}', r)).toMatch(/column 11: executing at <\.Nope>: can't evaluate field Nope \(fields: ID, Names\)/);
    expect(fails('{{index .Config.Env 5}}', inspect)).toMatch(/index out of range: 5/);
    expect(fails('{{.State.Pid.X}}', inspect)).toMatch(/can't evaluate field X in type number/);
    expect(fails('{{.State.ExitCode.X}}', inspect)).toMatch(/nil pointer evaluating \.X/);
    expect(fails('{{$nope}}', inspect)).toMatch(/undefined variable: \$nope/);
    expect(fails('{{lt .Name 3}}', inspect)).toMatch(/incompatible types for comparison/);
    expect(fails('{{.Name 3}}', inspect)).toMatch(/not a method but has arguments/);
  });

  it('printValue matches Go for nested values', () => {
    expect(printValue({ b: [1, 2], a: { c: null } })).toBe('map[a:map[c:<nil>] b:[1 2]]');
  });
});

describe('listings: table prefix, \\t escapes, tabwriter, json of a row', () => {
  const rows = [row({ ID: 'abc', Names: 'first' }), row({ ID: 'abcdef123456', Names: 'n<2>' })];
  const headers = { ID: 'CONTAINER ID', Names: 'NAMES' };

  it('a plain template prints one line a row, with \\t and \\n turned into tab and newline', () => {
    expect(formatRows('{{.ID}}\\t{{.Names}}', rows, headers)).toBe('abc\tfirst\nabcdef123456\tn<2>\n');
    expect(unescapeFormat('a\\nb')).toBe('a\nb');
  });

  it('table prints the header row then aligned rows (minwidth 10, padding 3, as docker)', () => {
    expect(formatRows('table {{.ID}}\\t{{.Names}}', rows, headers)).toBe('CONTAINER ID   NAMES\nabc            first\nabcdef123456   n<2>\n');
    expect(formatRows('table {{.Names}}\\t{{.ID}}', rows, headers)).toBe('NAMES     CONTAINER ID\nfirst     abc\nn<2>      abcdef123456\n');
    // `table` alone: the caller's default table
    expect(formatRows('table', rows, headers)).toBeUndefined();
    expect(formatRows('', rows, headers)).toBeUndefined();
  });

  it('{{json .}} prints every field with docker\'s keys, sorted, <>& escaped as docker\'s row marshalling', () => {
    expect(formatRows('{{json .}}', rows, headers)).toBe('{"ID":"abc","Names":"first"}\n{"ID":"abcdef123456","Names":"n\\u003c2\\u003e"}\n');
  });

  it('tabwriter: column blocks as Go\'s, the last cell never padded', () => {
    expect(tabwriter('a\tb\tc\nlonger cell\tx\n')).toBe('a' + ' '.repeat(13) + 'b         c\nlonger cell   x\n');
    expect(tabwriter('a\tb\nno tabs\nc\td\n')).toBe('a         b\nno tabs\nc         d\n');
  });

  it('human durations and times as docker prints them', () => {
    expect(humanDuration(500)).toBe('Less than a second');
    expect(humanDuration(1000)).toBe('1 second');
    expect(humanDuration(42_000)).toBe('42 seconds');
    expect(humanDuration(90_000)).toBe('About a minute');
    expect(humanDuration(10 * 60_000)).toBe('10 minutes');
    expect(humanDuration(3 * 3_600_000)).toBe('3 hours');
    expect(humanDuration(5 * 86_400_000)).toBe('5 days');
    expect(humanSize(1_982_464)).toBe('1.98MB');
    expect(humanSize(1_982_464, 4)).toBe('1.982MB');
    expect(humanSize(999)).toBe('999B');
    expect(goTime('2026-01-02T03:04:05.678Z')).toBe('2026-01-02 03:04:05 +0000 UTC');
    expect(ellipsis('sh -c while true; do sleep 1; done', 20)).toBe('sh -c while true; d…');
  });
});

describe('ps --filter', () => {
  const c = (o: Partial<Filterable>): Filterable => ({ id: 'a1b2c3d4e5f6', name: 'web', state: 'running', labels: {}, exitCode: null, ...o });

  it('same key ORed, different keys ANDed, labels all required (docker)', () => {
    const f = parseFilters(['name=web', 'name=db', 'status=running']);
    expect(matches(f, c({}))).toBe(true);
    expect(matches(f, c({ name: 'db' }))).toBe(true);
    expect(matches(f, c({ name: 'cache' }))).toBe(false);
    expect(matches(f, c({ state: 'exited' }))).toBe(false);
    const l = parseFilters(['label=app', 'label=tier=front']);
    expect(matches(l, c({ labels: { app: '', tier: 'front' } }))).toBe(true);
    expect(matches(l, c({ labels: { app: 'x' } }))).toBe(false);
    expect(matches(l, c({ labels: { app: 'x', tier: 'back' } }))).toBe(false);
  });

  it('name is a regular expression (substring by default; "^name" and "^/name" both anchor, as docker 20.10), id a prefix', () => {
    expect(matches(parseFilters(['name=e']), c({}))).toBe(true);
    expect(matches(parseFilters(['name=^/web$']), c({}))).toBe(true);
    expect(matches(parseFilters(['name=^web$']), c({}))).toBe(true);
    expect(matches(parseFilters(['name=^eb']), c({}))).toBe(false);
    // id: a prefix (docker 20.10 finds nothing for a piece from the middle of an id)
    expect(matches(parseFilters(['id=a1b2']), c({}))).toBe(true);
    expect(matches(parseFilters(['id=c3d4']), c({}))).toBe(false);
    expect(matches(parseFilters(['id=a1b2', 'id=ffff']), c({}))).toBe(true);
  });

  it('status and exited filters; they show stopped containers without -a', () => {
    expect(impliesAll(parseFilters(['status=exited']))).toBe(true);
    expect(impliesAll(parseFilters(['name=x']))).toBe(false);
    expect(matches(parseFilters(['exited=3']), c({ state: 'exited', exitCode: 3 }))).toBe(true);
    expect(matches(parseFilters(['exited=3']), c({ state: 'exited', exitCode: 0 }))).toBe(false);
    expect(matches(parseFilters(['ancestor=busybox']), c({ ancestor: (v) => v === 'busybox' }))).toBe(true);
  });

  it('refuses unknown keys, bad values and missing "=" with the filter named (exit 125)', () => {
    for (const [v, msg] of [
      ['colour=red', /--filter "colour=red": invalid filter "colour"/],
      ['status=sleeping', /invalid status "sleeping"/],
      ['exited=x', /exited takes an exit code/],
      ['name', /bad format of filter/],
      ['name=(', /not a regular expression/],
      ['id=a b', /id takes the start of a container id/],
      ['label==v', /label needs a key/],
    ] as const) {
      try {
        parseFilters([v]);
        expect.fail(`${v} accepted`);
      } catch (e) {
        expect(e).toBeInstanceOf(UsageError);
        expect((e as UsageError).exitCode).toBe(125);
        expect((e as Error).message).toMatch(msg);
      }
    }
  });
});

describe('kill: docker form prints, OCI form does not', () => {
  it('tells `kill ID SIGNAL` (OCI) from `kill [-s SIG] ID...` (docker)', () => {
    expect(killArgs('c1', ['KILL'], undefined)).toEqual({ ids: ['c1'], signal: 'SIGKILL', oci: true });
    expect(killArgs('c1', ['9'], undefined)).toEqual({ ids: ['c1'], signal: 9, oci: true });
    expect(killArgs('c1', [], undefined)).toEqual({ ids: ['c1'], signal: 'SIGTERM', oci: false });
    expect(killArgs('c1', ['c2'], 'HUP')).toEqual({ ids: ['c1', 'c2'], signal: 'SIGHUP', oci: false });
    expect(killArgs('c1', ['c2', 'c3'], undefined)).toEqual({ ids: ['c1', 'c2', 'c3'], signal: 'SIGTERM', oci: false });
    expect(killArgs('c1', ['notasignal'], undefined).ids).toEqual(['c1', 'notasignal']);
  });
});

describe('labels annotation', () => {
  it('reads the JSON map run --label writes; anything else reads as none', () => {
    expect(labelsOf({ 'tsrun.labels': '{"a":"1","b":""}' })).toEqual({ a: '1', b: '' });
    expect(labelsOf({ 'tsrun.labels': '[1]' })).toEqual({});
    expect(labelsOf({ 'tsrun.labels': '{bad' })).toEqual({});
    expect(labelsOf({ 'tsrun.labels': '{"a":1}' })).toEqual({});
    expect(labelsOf(undefined)).toEqual({});
  });

  it('merges the image\'s string labels under the container\'s own', () => {
    const a = withImageLabels({ 'tsrun.labels': '{"app":"mine"}', other: 'x' }, { app: 'image', from: 'image', n: 7 as unknown as string });
    expect(labelsOf(a)).toEqual({ app: 'mine', from: 'image' });
    expect(a?.other).toBe('x');
    expect(withImageLabels({ x: '1' }, undefined)).toEqual({ x: '1' });
    expect(withImageLabels({ x: '1' }, {})).toEqual({ x: '1' });
  });
});
