// The generated validator must be what the vendored schema compiles to today, and the
// schema must accept what tsrun and engines write.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadValidator, validateSpecShape } from '../../src/spec/bundle.js';

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

  it('the build puts a V8 code cache next to dist/schema/config-validator.cjs that this node accepts', () => {
    // npm test builds first (pretest); the cache is what makes a bundle's validation cheap
    const v = loadValidator(join(ROOT, 'dist', 'schema', 'config-validator.cjs'));
    expect(v.cacheRejected).toBe(false);
    expect(v({ ociVersion: '1.2.0', process: { cwd: '/', args: ['sh'] } })).toBe(true);
    expect(v({ ociVersion: '1.2.0', process: { cwd: 7 } })).toBe(false);
    expect(v.errors?.[0]).toMatchObject({ instancePath: '/process/cwd', message: 'must be string' });
  });
});
