import { describe, expect, it } from 'vitest';
import { validateRecord, validateState } from '../../src/runtime/state.js';

// A state file is evidence, not truth (design.md rule 6): whatever shape it has, reading it
// gives a reason, never an exception further on.

const id = 'c0ffee';
const dir = `/var/lib/tsrun/containers/${id}`;
const good = () => ({
  ociVersion: '1.2.0',
  id,
  pid: 42,
  pidStart: '123',
  bundle: '',
  rootfs: `${dir}/merged`,
  created: '2026-01-01T00:00:00Z',
  annotations: { a: 'b' },
  containerDir: dir,
  cleanup: [
    { where: 'parent', phase: 'cleanup', action: 'cgroup', verb: 'remove', path: `/sys/fs/cgroup/pids/tsrun/${id}`, text: 'rmdir', control: 'cgroups', why: '' },
    { where: 'parent', phase: 'cleanup', action: 'remove', path: dir, text: 'rm -rf', control: 'rootfs', why: '' },
  ],
  config: { ociVersion: '1.2.0', process: { args: ['sh'], cwd: '/' }, root: { path: 'rootfs' }, linux: { namespaces: [{ type: 'pid' }] } },
});

describe('state validation', () => {
  it('accepts what launch writes', () => {
    expect(validateState(good(), id)).toBeUndefined();
    expect(validateRecord({ id, created: 'x', containerDir: dir, annotations: {}, cleanup: [] }, id)).toBeUndefined();
  });

  it.each([
    ['null', null, /not an object \(null\)/],
    ['{}', {}, /no id/],
    ['an array', [], /array/],
    ['pid "abc"', { ...good(), pid: 'abc' }, /pid "abc" is not a process id/],
    ['a negative pid', { ...good(), pid: -1 }, /pid -1/],
    ['another id', { ...good(), id: 'other' }, /not its directory's/],
    ['args not strings', { ...good(), config: { ...good().config, process: { args: [1] } } }, /config.process.args/],
    ['no namespaces', { ...good(), config: { ...good().config, linux: {} } }, /namespaces/],
    ['a foreign data dir', { ...good(), containerDir: '/etc' }, /containerDir "\/etc"/],
    ['a relative data dir', { ...good(), containerDir: `../containers/${id}` }, /containerDir/],
    ['a cleanup removing /etc', { ...good(), cleanup: [{ where: 'parent', phase: 'cleanup', action: 'remove', path: '/etc', text: '' }] }, /removes "\/etc", not the container's directory/],
    ['a cleanup writing a file', { ...good(), cleanup: [{ where: 'parent', phase: 'cleanup', action: 'write-file', path: '/etc/x', text: '' }] }, /"write-file" is no cleanup action/],
    ['a cgroup path climbing out', { ...good(), cleanup: [{ where: 'parent', phase: 'cleanup', action: 'cgroup', verb: 'remove', path: '/sys/fs/cgroup/../../etc', text: '' }] }, /not a cgroup cleanup/],
    ['a bad name', { ...good(), name: '../x' }, /name/],
    ['monitorPid 0', { ...good(), monitorPid: 0 }, /monitorPid/],
    ['keeperPid "1"', { ...good(), keeperPid: '1' }, /keeperPid/],
    ['rmOnExit "yes"', { ...good(), rmOnExit: 'yes' }, /rmOnExit/],
  ])('refuses %s', (_what, x, why) => {
    expect(validateState(x, id)).toMatch(why);
  });
});
