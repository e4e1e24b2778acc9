#!/bin/sh
# Runs inside the QEMU guest booted with security=selinux: load the policy built on the host
# (test/vm/harness.ts ensureSelinuxPolicy; $tsrun_selinux_policy), then the SELinux suite.
mkdir -p /sys/fs/selinux
mount -t selinuxfs selinuxfs /sys/fs/selinux || exit 90
# selinuxfs takes the whole policy in one write: dd with a block larger than the file
dd if="$tsrun_project/$tsrun_selinux_policy" of=/sys/fs/selinux/load bs=16M 2>/dev/null || exit 91
exec node "$tsrun_project/test/vm/guest-selinux.mjs"
