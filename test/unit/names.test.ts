import { describe, expect, it } from 'vitest';
import { generateName } from '../../src/cli/names.js';

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
});
