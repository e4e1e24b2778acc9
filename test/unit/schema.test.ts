// The generated validator must be what the vendored schema compiles to today, and the
// schema must accept what tsrun and engines write.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { validateSpecShape } from '../../src/spec/bundle.js';

const ROOT = join(import.meta.dirname, '..', '..');

describe('vendored OCI runtime-spec schema', () => {
  it('config-validator.cjs is current (node scripts/gen-schema-validator.mjs)', async () => {
    const { generate } = (await import(join(ROOT, 'scripts', 'gen-schema-validator.mjs'))) as { generate: () => string };
    expect(generate() === readFileSync(join(ROOT, 'src', 'spec', 'schema', 'config-validator.cjs'), 'utf8')).toBe(true);
  });

  it('accepts what `runc spec` writes (runc 1.1, fixtures/runc-spec-config.json)', () => {
    const text = readFileSync(join(ROOT, 'test', 'unit', 'fixtures', 'runc-spec-config.json'), 'utf8');
    expect(validateSpecShape(JSON.parse(text)).process.args).toEqual(['sh']);
  });
});
