#!/bin/sh
# Runs inside the QEMU guest (pure cgroup v2). dist/ is compiled on the host before boot.
exec node "$tsrun_project/test/vm/guest-suite.mjs"
