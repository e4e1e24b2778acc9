#!/bin/sh
# Second stage inside the guest (host's /bin/sh over 9p): a minimal system with cgroup2 only,
# then the suite given on the kernel command line; its exit code leaves through port 0xf4.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts && mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
# A project checked out under /tmp or /run (CI clones anywhere) would vanish under these
# tmpfs mounts: park its 9p mount on devtmpfs (writable already) and move it back after.
case "$tsrun_project" in /tmp/* | /run/*) parked=/dev/.tsrun-project ;; *) parked= ;; esac
if [ -n "$parked" ]; then mkdir -p "$parked" && mount -n --move "$tsrun_project" "$parked" || exit 1; fi
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
if [ -n "$parked" ]; then mkdir -p "$tsrun_project" && mount -n --move "$parked" "$tsrun_project" || exit 1; fi
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp
cd "$tsrun_project" || exit 1
echo "tsrun-vm: kernel $(uname -r), cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
sh "$1"
rc=$?
echo "tsrun-vm-exit $rc"
printf "\\$(printf %03o "$rc")" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
echo o > /proc/sysrq-trigger
