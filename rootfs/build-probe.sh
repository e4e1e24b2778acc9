#!/bin/sh
# Builds the root of the built-in `probe` image into DEST: the busybox root
# (build-busybox.sh) plus the static probe (rootfs/probe.c, built by `npm install` into
# build/probe) and the two privileged copies the docs' demos use:
#   /probe        what the container sees (`probe show`, the default), and the tests' witness
#   /probe-suid   setuid root (mode 4755): no-new-privileges.md shows execve granting root
#                 to uid 1000, and no_new_privs refusing it
#   /probe-fcap   file capability cap_chown+ep (security.capability): capabilities.md shows a
#                 non-root user gaining CAP_CHOWN at execve, and no_new_privs refusing it
# usage: build-probe.sh DEST [PROBE]   (PROBE defaults to build/probe)
set -eu
dest=${1:?usage: build-probe.sh DEST [PROBE]}
here=$(cd "$(dirname "$0")" && pwd)
probe=${2:-$here/../build/probe}
if [ ! -x "$probe" ]; then
  echo "build-probe: $probe not found: run npm install (or make -C native) first" >&2
  exit 1
fi
sh "$here/build-busybox.sh" "$dest"
cp "$probe" "$dest/probe"
chmod 755 "$dest/probe"
cp "$probe" "$dest/probe-suid"
chown 0:0 "$dest/probe-suid"
chmod 4755 "$dest/probe-suid"
cp "$probe" "$dest/probe-fcap"
chmod 755 "$dest/probe-fcap"
if command -v setcap >/dev/null 2>&1; then
  setcap cap_chown+ep "$dest/probe-fcap"
else
  echo "build-probe: setcap not found (package libcap2-bin): /probe-fcap has no file capability" >&2
fi
