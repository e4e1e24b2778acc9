// Node's heavier built-in modules, loaded when first used rather than when tsrun starts.
// The CLI starts from a V8 snapshot of its heap (scripts/bundle.mjs): every module loaded
// at start-up is in it and costs deserialisation on every call, while a plain `tsrun run`
// spawns no child process, unpacks no layer and relays no terminal.
export const childProcess = () => process.getBuiltinModule('node:child_process');
export const zlib = () => process.getBuiltinModule('node:zlib');
export const stream = () => process.getBuiltinModule('node:stream');
export const tty = () => process.getBuiltinModule('node:tty');
export const net = () => process.getBuiltinModule('node:net');
export const vm = () => process.getBuiltinModule('node:vm');
// node:http cannot even load in the snapshot builder (Node 20: `methods.toSorted` missing there)
export const http = () => process.getBuiltinModule('node:http');
export const https = () => process.getBuiltinModule('node:https');
export const v8 = () => process.getBuiltinModule('node:v8');
