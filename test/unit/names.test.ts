import { describe, expect, it } from 'vitest';
import { generateName, withGeneratedName } from '../../src/cli/names.js';
import { NameInUseError, StateError } from '../../src/errors.js';

describe('generated container names (docker run without --name)', () => {
  it('are adjective_object, valid as --name, and avoid the names taken', () => {
    for (let i = 0; i < 200; i++) expect(generateName(new Set())).toMatch(/^[a-z]+_[a-z_]+[0-9]?$/);
    const first = generateName(new Set(), () => 0);
    expect(first).toBe('agile_apparmor');
    // the first pick is taken: another one
    let n = 0;
    expect(generateName(new Set([first]), () => Math.min(n++, 1))).not.toBe(first);
  });

  it('add a digit, as docker does, when ten tries found only taken names', () => {
    const seen: string[] = [];
    const name = generateName(new Set(['agile_apparmor']), (m) => (m === 10 ? (seen.push('digit'), 7) : 0));
    expect(name).toBe('agile_apparmor7');
    expect(seen).toEqual(['digit']);
  });

  it('a name taken by a concurrent run between the choice and launch: another name, a few times, then the error', async () => {
    const tried: string[] = [];
    // the first start loses the race (launch says the name is in use), the second wins
    const got = await withGeneratedName(
      () => new Set(tried),
      async (name) => {
        tried.push(name);
        if (tried.length === 1) throw new NameInUseError(`--name "${name}" is already in use`);
        return name;
      },
    );
    expect(tried).toHaveLength(2);
    expect(got).toBe(tried[1]);
    expect(tried[1]).not.toBe(tried[0]);
    // always taken: it gives up after `tries` and says why
    let n = 0;
    await expect(withGeneratedName(() => new Set(), async () => { n++; throw new NameInUseError('in use'); }, 3)).rejects.toThrow('in use');
    expect(n).toBe(3);
    // any other error is not retried
    n = 0;
    await expect(withGeneratedName(() => new Set(), async () => { n++; throw new StateError('no such image'); })).rejects.toThrow('no such image');
    expect(n).toBe(1);
  });
});
