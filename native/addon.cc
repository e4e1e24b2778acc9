// The only native code Node loads: clone the container's first process with its
// namespace flags, and the few syscalls Node has no API for. Policy lives in TypeScript
// (src/); the child side is native/init.c, executed from a sealed memfd.
#include <napi.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <termios.h>
#include <unistd.h>

#include <string>

extern "C" {
#include "protocol.h"
#include "spawn.h"
}

namespace {

int g_init_fd = -1;  // sealed memfd holding tsrun-init, made once per process

Napi::Error ErrnoError(Napi::Env env, const std::string& what, int err) {
  Napi::Error e = Napi::Error::New(env, what + ": " + strerror(err));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, what));
  return e;
}

bool WriteAll(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= (size_t)w;
  }
  return true;
}

// The container's init must never be a host file it could reach through /proc/<pid>/exe
// (CVE-2019-5736): copy it into a memfd and seal it against any further write, shrink or
// grow, then exec that (memfd_create(2), fcntl(2) F_ADD_SEALS).
int SealedInit(const std::string& path, int* err) {
  if (g_init_fd >= 0) return g_init_fd;
  int src = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (src < 0) return *err = errno, -1;
  int mfd = (int)syscall(SYS_memfd_create, "tsrun-init", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (mfd < 0) return *err = errno, close(src), -1;
  // sendfile(2): the kernel copies the ~700 KB page by page, no round trip through a buffer
  for (;;) {
    ssize_t r = sendfile(mfd, src, nullptr, 1 << 20);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      *err = errno;
      close(src);
      close(mfd);
      return -1;
    }
    if (r == 0) break;
  }
  close(src);
  if (fchmod(mfd, 0555) < 0 ||
      fcntl(mfd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0) {
    *err = errno;
    close(mfd);
    return -1;
  }
  g_init_fd = mfd;
  return mfd;
}

// What every clone of tsrun-init needs: the sealed init, the plan in a memfd (the init
// maps it: no size limit, unlike a pipe) and the sync socket pair.
struct SpawnFds {
  int init_fd;
  int plan_fd;
  int sync[2];
};

SpawnFds PrepareFds(Napi::Env env, Napi::Object o) {
  std::string init_path = o.Get("initPath").As<Napi::String>();
  Napi::Buffer<uint8_t> plan = o.Get("plan").As<Napi::Buffer<uint8_t>>();
  SpawnFds f = {-1, -1, {-1, -1}};
  int err = 0;
  f.init_fd = SealedInit(init_path, &err);
  if (f.init_fd < 0) throw ErrnoError(env, "open " + init_path, err);
  f.plan_fd = (int)syscall(SYS_memfd_create, "tsrun-plan", MFD_CLOEXEC);
  if (f.plan_fd < 0) throw ErrnoError(env, "memfd_create", errno);
  if (!WriteAll(f.plan_fd, plan.Data(), plan.Length())) {
    err = errno;
    close(f.plan_fd);
    throw ErrnoError(env, "write plan", err);
  }
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, f.sync) < 0) {
    err = errno;
    close(f.plan_fd);
    throw ErrnoError(env, "socketpair", err);
  }
  return f;
}

// spawn({ initPath, plan: Buffer, cloneFlags, stdio: [fd, fd, fd], cgroupDir? }) → { pid, syncFd }
Napi::Value Spawn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  uint64_t flags = (uint64_t)o.Get("cloneFlags").As<Napi::Number>().Int64Value();
  Napi::Array stdio = o.Get("stdio").As<Napi::Array>();
  int in_fds[3];
  for (uint32_t i = 0; i < 3; i++) in_fds[i] = stdio.Get(i).As<Napi::Number>().Int32Value();
  // --preserve-fds N: this process's fds 3..3+N-1 become the container's (native/spawn.h)
  int npreserve = o.Has("preserveFds") ? o.Get("preserveFds").As<Napi::Number>().Int32Value() : 0;
  if (npreserve < 0 || npreserve > TSRUN_MAX_PRESERVE) throw ErrnoError(env, "preserveFds", EINVAL);
  // No namespace is ever joined here, and only `run`/`create` pass a cgroup (a new one): the
  // child is a copy of node until it execs, and no copy of a host binary may enter a
  // container's namespace or cgroup (CVE-2019-5736). exec joins from tsrun-init (OP_SETNS,
  // OP_FORK).
  std::string cgroup_dir = o.Has("cgroupDir") ? o.Get("cgroupDir").As<Napi::String>().Utf8Value() : "";
  int cgroup_fd = -1;
  if (!cgroup_dir.empty()) {
    cgroup_fd = open(cgroup_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cgroup_fd < 0) throw ErrnoError(env, "open " + cgroup_dir, errno);
  }

  SpawnFds f;
  try {
    f = PrepareFds(env, o);
  } catch (...) {
    if (cgroup_fd >= 0) close(cgroup_fd);
    throw;
  }
  int init_fd = f.init_fd, plan_fd = f.plan_fd, err = 0;
  int* sv = f.sync;

  pid_t pid = tsrun_spawn_init_preserving(flags, init_fd, plan_fd, sv[1], in_fds, cgroup_fd, npreserve);
  err = errno;
  if (cgroup_fd >= 0) close(cgroup_fd);
  close(sv[1]);
  close(plan_fd);
  if (pid < 0) {
    close(sv[0]);
    throw ErrnoError(env, cgroup_fd >= 0 ? "clone3(CLONE_INTO_CGROUP " + cgroup_dir + ")" : "clone", err);
  }
  Napi::Object r = Napi::Object::New(env);
  r.Set("pid", Napi::Number::New(env, pid));
  r.Set("syncFd", Napi::Number::New(env, sv[0]));
  return r;
}

// prepareSpawn({ initPath, plan }) → { initFd, planFd, syncFd, childSyncFd }: what a
// clone needs, for when another process (tsrun-monitor) does the clone.
Napi::Value PrepareSpawn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  SpawnFds f = PrepareFds(env, info[0].As<Napi::Object>());
  int init_fd = f.init_fd, plan_fd = f.plan_fd;
  int* sv = f.sync;
  Napi::Object r = Napi::Object::New(env);
  r.Set("initFd", Napi::Number::New(env, init_fd));
  r.Set("planFd", Napi::Number::New(env, plan_fd));
  r.Set("syncFd", Napi::Number::New(env, sv[0]));
  r.Set("childSyncFd", Napi::Number::New(env, sv[1]));
  return r;
}

// pipe() → [read, write]: close-on-exec, so an end reaches a container only through the
// dup2 onto 0-2 in the cloned child (design rule 4: a container gets pipes, not tsrun's fds).
Napi::Value Pipe(const Napi::CallbackInfo& info) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) throw ErrnoError(info.Env(), "pipe2", errno);
  Napi::Array a = Napi::Array::New(info.Env(), 2);
  a.Set(0u, Napi::Number::New(info.Env(), p[0]));
  a.Set(1u, Napi::Number::New(info.Env(), p[1]));
  return a;
}

// socketpair() → [fd, fd]: SOCK_SEQPACKET, close-on-exec.
Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) throw ErrnoError(info.Env(), "socketpair", errno);
  Napi::Array a = Napi::Array::New(info.Env(), 2);
  a.Set(0u, Napi::Number::New(info.Env(), sv[0]));
  a.Set(1u, Napi::Number::New(info.Env(), sv[1]));
  return a;
}

// One datagram (or stream write) carrying up to 8 fds with SCM_RIGHTS (unix(7)); 0 or -errno.
int SendWithFds(int sock, const void* data, size_t len, const int* fds, uint32_t nfds) {
  struct iovec iov = {const_cast<void*>(data), len};
  union {
    char buf[CMSG_SPACE(sizeof(int) * 8)];
    struct cmsghdr align;
  } u;
  memset(&u, 0, sizeof u);
  struct msghdr mh = {};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (nfds > 8) nfds = 8;
  if (nfds) {
    mh.msg_control = u.buf;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  ssize_t r;
  do r = sendmsg(sock, &mh, MSG_NOSIGNAL);
  while (r < 0 && errno == EINTR);
  return r < 0 ? -errno : 0;
}

// sendMsg(fd, Buffer, [fds]): one datagram with SCM_RIGHTS.
Napi::Value SendMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Buffer<uint8_t> data = info[1].As<Napi::Buffer<uint8_t>>();
  int fds[8];
  uint32_t nfds = 0;
  if (info.Length() > 2 && info[2].IsArray()) {
    Napi::Array a = info[2].As<Napi::Array>();
    for (; nfds < a.Length() && nfds < 8; nfds++) fds[nfds] = a.Get(nfds).As<Napi::Number>().Int32Value();
  }
  int e = SendWithFds(fd, data.Data(), data.Length(), fds, nfds);
  if (e < 0) throw ErrnoError(env, "sendmsg", -e);
  return env.Undefined();
}

// recvMsg(fd, size) → null on EOF, or Buffer (blocking).
Napi::Value RecvMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  uint32_t size = info[1].As<Napi::Number>().Uint32Value();
  std::string buf(size, '\0');
  ssize_t r;
  do r = recv(fd, &buf[0], size, 0);
  while (r < 0 && errno == EINTR);
  if (r < 0) throw ErrnoError(env, "recv", errno);
  if (r == 0) return env.Null();
  return Napi::Buffer<uint8_t>::Copy(env, (const uint8_t*)buf.data(), (size_t)r);
}

// sendConsole(path, fd): the OCI console-socket protocol: connect to the engine's unix
// socket and pass it the pty master with SCM_RIGHTS (runtime-spec, "Console socket").
Napi::Value SendConsole(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  int pty = info[1].As<Napi::Number>().Int32Value();
  struct sockaddr_un sa = {};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) throw ErrnoError(env, "--console-socket " + path, ENAMETOOLONG);
  memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) throw ErrnoError(env, "socket", errno);
  if (connect(s, (struct sockaddr*)&sa, sizeof sa) < 0) {
    int e = errno;
    close(s);
    throw ErrnoError(env, "connect --console-socket " + path, e);
  }
  char name[] = "/dev/ptmx";
  int e = SendWithFds(s, name, sizeof name, &pty, 1);
  close(s);
  if (e < 0) throw ErrnoError(env, "sendmsg --console-socket " + path, -e);
  return env.Undefined();
}

// syncSend(fd, type[, passFd])
Napi::Value SyncSend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct sync_msg m = {(uint32_t)info[1].As<Napi::Number>().Uint32Value(), 0, 0, 0};
  int pass = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : -1;
  int e = SendWithFds(fd, &m, sizeof m, &pass, pass >= 0 ? 1 : 0);
  if (e < 0) throw ErrnoError(env, "sendmsg", -e);
  return env.Undefined();
}

// syncRecv(fd) → null on EOF (the child exec'd: the socket is close-on-exec), or
// { type, index, err, fd? }. Blocks: the child is mid set-up and answers in milliseconds.
Napi::Value SyncRecv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct sync_msg m;
  struct iovec iov = {&m, sizeof m};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  struct msghdr mh = {};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = u.buf;
  mh.msg_controllen = sizeof u.buf;
  ssize_t r;
  do r = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
  while (r < 0 && errno == EINTR);
  if (r < 0) throw ErrnoError(env, "recvmsg", errno);
  if (r == 0) return env.Null();
  if (r != (ssize_t)sizeof m) throw ErrnoError(env, "recvmsg (short message)", EPROTO);
  Napi::Object o = Napi::Object::New(env);
  o.Set("type", Napi::Number::New(env, m.type));
  o.Set("index", Napi::Number::New(env, m.index));
  o.Set("err", Napi::Number::New(env, m.err));
  struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
  if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
    int passed;
    memcpy(&passed, CMSG_DATA(c), sizeof passed);
    o.Set("fd", Napi::Number::New(env, passed));
  }
  return o;
}

class WaitWorker : public Napi::AsyncWorker {
 public:
  WaitWorker(Napi::Env env, pid_t pid)
      : Napi::AsyncWorker(env), pid_(pid), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    pid_t r;
    do r = waitpid(pid_, &status_, __WALL);
    while (r < 0 && errno == EINTR);
    if (r < 0) err_ = errno;
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (err_) {
      deferred_.Reject(ErrnoError(env, "waitpid", err_).Value());
      return;
    }
    Napi::Object o = Napi::Object::New(env);
    if (WIFEXITED(status_)) o.Set("code", Napi::Number::New(env, WEXITSTATUS(status_)));
    if (WIFSIGNALED(status_)) o.Set("signal", Napi::Number::New(env, WTERMSIG(status_)));
    deferred_.Resolve(o);
  }

 private:
  pid_t pid_;
  int status_ = 0;
  int err_ = 0;
  Napi::Promise::Deferred deferred_;
};

// waitPid(pid) → Promise<{ code?, signal? }>, waited on a libuv worker thread.
Napi::Value WaitPid(const Napi::CallbackInfo& info) {
  auto* w = new WaitWorker(info.Env(), (pid_t)info[0].As<Napi::Number>().Int32Value());
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// setWinsize(fd, rows, cols): TIOCSWINSZ on the pty master follows the user's terminal.
Napi::Value SetWinsize(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct winsize ws = {};
  ws.ws_row = (unsigned short)info[1].As<Napi::Number>().Uint32Value();
  ws.ws_col = (unsigned short)info[2].As<Napi::Number>().Uint32Value();
  if (ioctl(fd, TIOCSWINSZ, &ws) < 0) throw ErrnoError(info.Env(), "ioctl TIOCSWINSZ", errno);
  return info.Env().Undefined();
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  close(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

// idmapTree(path, pid, recursive) → fd of a detached copy of the mount at `path` whose
// ids are shifted through the user namespace of `pid` (mount_setattr(2) MOUNT_ATTR_IDMAP,
// Linux 5.12): a file owned by uid 0 on disk is seen as that namespace's uid 0, i.e. host
// uid 100000 with a 0:100000 map. The child move_mount()s it (OP_MOUNT_FD). The filesystem
// must support idmapping (ext4, xfs, btrfs, tmpfs do; overlayfs itself does not, which is
// why tsrun idmaps the image layers under the overlay).
Napi::Value IdmapTree(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  int pid = info[1].As<Napi::Number>().Int32Value();
  bool recursive = info[2].As<Napi::Boolean>().Value();
  std::string ns = "/proc/" + std::to_string(pid) + "/ns/user";
  int userns = open(ns.c_str(), O_RDONLY | O_CLOEXEC);
  if (userns < 0) throw ErrnoError(env, "open " + ns, errno);
  int tree = (int)syscall(SYS_open_tree, AT_FDCWD, path.c_str(),
                          OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0));
  if (tree < 0) {
    int e = errno;
    close(userns);
    throw ErrnoError(env, "open_tree " + path, e);
  }
  struct mount_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.attr_set = MOUNT_ATTR_IDMAP;
  attr.userns_fd = (uint64_t)userns;
  int r = (int)syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr, sizeof attr);
  int e = errno;
  close(userns);
  if (r < 0) {
    close(tree);
    throw ErrnoError(env, "mount_setattr(MOUNT_ATTR_IDMAP) " + path, e);
  }
  return Napi::Number::New(env, tree);
}

// Host-side reads of image and container content (trust-boundary rule 2, docs/host-access.md).
// `root` is a directory tsrun trusts (an image layer, /proc/<pid>/root); `path` is resolved
// inside it by openat2(2) RESOLVE_IN_ROOT, so ".." and absolute symlinks stop at `root`, and
// RESOLVE_NO_MAGICLINKS refuses /proc/*/fd and /proc/*/root links (ELOOP) that would leave it.
int OpenRoot(Napi::Env env, const std::string& root) {
  int fd = open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw ErrnoError(env, "open root " + root, errno);
  return fd;
}

int OpenInRoot(int rootfd, const std::string& path, uint64_t flags) {
  size_t i = path.find_first_not_of('/');
  std::string rel = i == std::string::npos ? "." : path.substr(i);
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = flags | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  long fd;
  do fd = syscall(SYS_openat2, rootfd, rel.c_str(), &how, sizeof how);
  while (fd < 0 && errno == EAGAIN);  // RESOLVE_IN_ROOT retries when a rename races the walk
  return (int)fd;
}

const char* FileType(mode_t m) {
  switch (m & S_IFMT) {
    case S_IFDIR: return "directory";
    case S_IFCHR: return "character device";
    case S_IFBLK: return "block device";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
    case S_IFLNK: return "symlink";
    default: return "unknown";
  }
}

// readFileInRoot(root, path, maxBytes) → Buffer. The file is first opened O_PATH, which
// opens nothing: a FIFO would block a read open, a device's open can act (a watchdog arms,
// a tape rewinds). Only a regular file is then reopened for reading, through its own fd
// (the same inode, so a container cannot swap it in between), O_NONBLOCK so a file that
// blocks (/proc/kmsg) says EAGAIN instead of hanging tsrun. Larger than maxBytes: EFBIG.
Napi::Value ReadFileInRoot(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string root = info[0].As<Napi::String>();
  std::string path = info[1].As<Napi::String>();
  int64_t max = info[2].As<Napi::Number>().Int64Value();
  int rootfd = OpenRoot(env, root);
  int pfd = OpenInRoot(rootfd, path, O_PATH);
  int e = errno;
  close(rootfd);
  if (pfd < 0) throw ErrnoError(env, "openat2 " + path, e);
  struct stat st;
  if (fstat(pfd, &st) < 0) {
    e = errno;
    close(pfd);
    throw ErrnoError(env, "fstat " + path, e);
  }
  if (!S_ISREG(st.st_mode)) {
    close(pfd);
    Napi::Error err = ErrnoError(env, "openat2 " + path, S_ISDIR(st.st_mode) ? EISDIR : EINVAL);
    err.Set("fileType", Napi::String::New(env, FileType(st.st_mode)));
    err.Set("detail", Napi::String::New(env, std::string("not a regular file: ") + FileType(st.st_mode)));
    err.Set("rdev", Napi::Number::New(env, (double)st.st_rdev));
    throw err;
  }
  if (st.st_size > max) {
    close(pfd);
    Napi::Error err = ErrnoError(env, "read " + path, EFBIG);
    err.Set("detail", Napi::String::New(env, std::to_string((long long)st.st_size) + " bytes, more than " + std::to_string((long long)max)));
    throw err;
  }
  std::string self = "/proc/self/fd/" + std::to_string(pfd);
  int fd = open(self.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  e = errno;
  close(pfd);
  if (fd < 0) throw ErrnoError(env, "open " + path, e);
  std::string data;
  char buf[65536];
  for (;;) {
    ssize_t r = read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      e = errno;
      close(fd);
      throw ErrnoError(env, "read " + path, e);
    }
    if (r == 0) break;
    data.append(buf, (size_t)r);
    if ((int64_t)data.size() > max) {  // it grew after fstat
      close(fd);
      Napi::Error err = ErrnoError(env, "read " + path, EFBIG);
      err.Set("detail", Napi::String::New(env, "more than " + std::to_string((long long)max) + " bytes"));
      throw err;
    }
  }
  close(fd);
  return Napi::Buffer<char>::Copy(env, data.data(), data.size());
}

// readDirInRoot(root, path, maxEntries) → names (without . and ..), at most maxEntries.
// O_DIRECTORY makes the walk refuse anything but a directory (ENOTDIR) before any open.
Napi::Value ReadDirInRoot(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string root = info[0].As<Napi::String>();
  std::string path = info[1].As<Napi::String>();
  uint32_t max = info[2].As<Napi::Number>().Uint32Value();
  int rootfd = OpenRoot(env, root);
  int fd = OpenInRoot(rootfd, path, O_RDONLY | O_DIRECTORY | O_NONBLOCK);
  int e = errno;
  close(rootfd);
  if (fd < 0) throw ErrnoError(env, "openat2 " + path, e);
  DIR* d = fdopendir(fd);
  if (!d) {
    e = errno;
    close(fd);
    throw ErrnoError(env, "fdopendir " + path, e);
  }
  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;
  e = 0;
  while (n < max) {
    errno = 0;
    struct dirent* ent = readdir(d);
    if (!ent) {
      e = errno;
      break;
    }
    if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0) continue;
    out.Set(n++, Napi::String::New(env, ent->d_name));
  }
  closedir(d);
  if (e) throw ErrnoError(env, "readdir " + path, e);
  return out;
}

Napi::Value StrError(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), strerror(info[0].As<Napi::Number>().Int32Value()));
}

// mkfifo(path, mode): Node has no API for it; OCI create/start synchronise through one.
Napi::Value MkFifo(const Napi::CallbackInfo& info) {
  std::string path = info[0].As<Napi::String>();
  if (mkfifo(path.c_str(), (mode_t)info[1].As<Napi::Number>().Uint32Value()) < 0)
    throw ErrnoError(info.Env(), "mkfifo " + path, errno);
  return info.Env().Undefined();
}

// setChildSubreaper(): prctl(PR_SET_CHILD_SUBREAPER, 1) (prctl(2)). `tsrun exec` waits for
// a command that is its grandchild (tsrun-init forks it into the container's PID
// namespace and exits): orphans are reparented to the nearest subreaper ancestor.
Napi::Value SetChildSubreaper(const Napi::CallbackInfo& info) {
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) throw ErrnoError(info.Env(), "prctl(PR_SET_CHILD_SUBREAPER)", errno);
  return info.Env().Undefined();
}

// flock(fd, "sh" | "ex" | "un"), never blocking: true when taken, false when another open
// file description holds it (EWOULDBLOCK). flock(2) locks belong to the open file
// description, so the kernel drops one when its last fd closes: a holder killed with
// SIGKILL leaves nothing stale, and no pid (which the kernel reuses) has to be trusted.
// Waiting is the caller's loop: a blocked flock in a worker thread could not honour a timeout.
Napi::Value Flock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  std::string mode = info[1].As<Napi::String>();
  int op = mode == "sh" ? LOCK_SH : mode == "ex" ? LOCK_EX : mode == "un" ? LOCK_UN : -1;
  if (op < 0) throw Napi::TypeError::New(env, "flock: mode must be sh, ex or un");
  for (;;) {
    if (flock(fd, op | LOCK_NB) == 0) return Napi::Boolean::New(env, true);
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
    throw ErrnoError(env, "flock", errno);
  }
}

// Layer unpacking and the rootfs writer (src/image/unpack.ts, tar.ts) need the calls Node's
// fs lacks. mknod: overlay whiteouts are character devices 0:0 (overlayfs(5) "Whiteouts and
// opaque directories") and layers carry FIFOs. The l*xattr calls act on a symlink itself,
// never its target (xattr(7)): security.capability, trusted.overlay.opaque. They run once
// per tar member, so each is one syscall in the usual case.

// mknod(path, mode, major, minor): mode carries the file type (S_IFCHR, S_IFIFO).
Napi::Value Mknod(const Napi::CallbackInfo& info) {
  std::string path = info[0].As<Napi::String>();
  mode_t mode = (mode_t)info[1].As<Napi::Number>().Uint32Value();
  dev_t dev = makedev(info[2].As<Napi::Number>().Uint32Value(), info[3].As<Napi::Number>().Uint32Value());
  if (mknod(path.c_str(), mode, dev) < 0) throw ErrnoError(info.Env(), "mknod " + path, errno);
  return info.Env().Undefined();
}

// lsetxattr(path, name, value: Buffer): creates or replaces the attribute.
Napi::Value LSetXattr(const Napi::CallbackInfo& info) {
  std::string path = info[0].As<Napi::String>();
  std::string name = info[1].As<Napi::String>();
  Napi::Buffer<uint8_t> v = info[2].As<Napi::Buffer<uint8_t>>();
  if (lsetxattr(path.c_str(), name.c_str(), v.Data(), v.Length(), 0) < 0)
    throw ErrnoError(info.Env(), "lsetxattr " + name + " " + path, errno);
  return info.Env().Undefined();
}

// An xattr value or name list: first into a stack buffer (one syscall for the usual few
// bytes), else asked for its size and read again; ERANGE means it grew in between.
template <typename Call>
ssize_t XattrRead(Call call, std::string* out) {
  char small[1024];
  ssize_t n = call(small, sizeof small);
  if (n >= 0) return out->assign(small, (size_t)n), n;
  while (errno == ERANGE) {
    ssize_t size = call(nullptr, 0);
    if (size < 0) return -1;
    out->resize((size_t)size);
    n = call(size ? &(*out)[0] : nullptr, (size_t)size);
    if (n >= 0) return out->resize((size_t)n), n;
  }
  return -1;
}

// lgetxattr(path, name) → Buffer, or null when the file has no such attribute (ENODATA).
Napi::Value LGetXattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  std::string name = info[1].As<Napi::String>();
  std::string v;
  if (XattrRead([&](char* b, size_t n) { return lgetxattr(path.c_str(), name.c_str(), b, n); }, &v) < 0) {
    if (errno == ENODATA) return env.Null();
    throw ErrnoError(env, "lgetxattr " + name + " " + path, errno);
  }
  return Napi::Buffer<char>::Copy(env, v.data(), v.size());
}

// llistxattr(path) → the names of the attributes this process may see.
Napi::Value LListXattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  std::string list;
  if (XattrRead([&](char* b, size_t n) { return llistxattr(path.c_str(), b, n); }, &list) < 0)
    throw ErrnoError(env, "llistxattr " + path, errno);
  Napi::Array out = Napi::Array::New(env);
  uint32_t i = 0;
  for (size_t at = 0; at < list.size();) {
    size_t end = list.find('\0', at);
    if (end == std::string::npos) end = list.size();
    if (end > at) out.Set(i++, Napi::String::New(env, list.data() + at, end - at));
    at = end + 1;
  }
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("spawn", Napi::Function::New(env, Spawn));
  exports.Set("syncSend", Napi::Function::New(env, SyncSend));
  exports.Set("syncRecv", Napi::Function::New(env, SyncRecv));
  exports.Set("waitPid", Napi::Function::New(env, WaitPid));
  exports.Set("setWinsize", Napi::Function::New(env, SetWinsize));
  exports.Set("close", Napi::Function::New(env, Close));
  exports.Set("strerror", Napi::Function::New(env, StrError));
  exports.Set("idmapTree", Napi::Function::New(env, IdmapTree));
  exports.Set("readFileInRoot", Napi::Function::New(env, ReadFileInRoot));
  exports.Set("readDirInRoot", Napi::Function::New(env, ReadDirInRoot));
  exports.Set("mkfifo", Napi::Function::New(env, MkFifo));
  exports.Set("prepareSpawn", Napi::Function::New(env, PrepareSpawn));
  exports.Set("socketpair", Napi::Function::New(env, SocketPair));
  exports.Set("pipe", Napi::Function::New(env, Pipe));
  exports.Set("sendMsg", Napi::Function::New(env, SendMsg));
  exports.Set("recvMsg", Napi::Function::New(env, RecvMsg));
  exports.Set("sendConsole", Napi::Function::New(env, SendConsole));
  exports.Set("setChildSubreaper", Napi::Function::New(env, SetChildSubreaper));
  exports.Set("flock", Napi::Function::New(env, Flock));
  exports.Set("mknod", Napi::Function::New(env, Mknod));
  exports.Set("lsetxattr", Napi::Function::New(env, LSetXattr));
  exports.Set("lgetxattr", Napi::Function::New(env, LGetXattr));
  exports.Set("llistxattr", Napi::Function::New(env, LListXattr));
  return exports;
}

}  // namespace

NODE_API_MODULE(tsrun, Init)
