#!/bin/sh
# Builds tsrun's built-in `busybox` image: a root filesystem made of the host's *static*
# busybox (Debian/Ubuntu package busybox-static) and its applet links. No network needed.
#   usage: build-busybox.sh DEST-DIR
set -eu
dest=${1:?usage: build-busybox.sh DEST-DIR}
bb=${BUSYBOX:-/bin/busybox}
if [ ! -x "$bb" ]; then
  echo "build-busybox: $bb not found: install the busybox-static package" >&2
  exit 1
fi
# A dynamically linked busybox would need the host's loader and libc inside the image.
if ! "$bb" --list >/dev/null 2>&1 || LC_ALL=C ldd "$bb" 2>/dev/null | grep -q '=>'; then
  echo "build-busybox: $bb is not a static busybox: install busybox-static" >&2
  exit 1
fi
mkdir -p "$dest"
cd "$dest"
mkdir -p bin sbin usr/bin usr/sbin etc root home tmp var/tmp run proc sys dev
chmod 1777 tmp var/tmp
chmod 700 root
cp "$bb" bin/busybox
chmod 755 bin/busybox
for applet in $("$bb" --list-full); do
  [ -e "$applet" ] || [ -L "$applet" ] || ln -s /bin/busybox "$applet"
done
cat > etc/passwd <<'PW'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PW
cat > etc/group <<'GR'
root:x:0:
daemon:x:1:
tty:x:5:
users:x:100:
nogroup:x:65534:
GR
echo 'tsrun busybox' > etc/issue
