// The only native code Node loads: clone the container's first process with its
// namespace flags, and the few syscalls Node has no API for. Policy lives in TypeScript
// (src/); the child side is native/init.c, executed from a sealed memfd.
#include <napi.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <string>

extern "C" {
#include "protocol.h"
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
  uint8_t buf[65536];
  for (;;) {
    ssize_t r = read(src, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || (r > 0 && !WriteAll(mfd, buf, (size_t)r))) {
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

// spawn({ initPath, plan: Buffer, cloneFlags, stdio: [fd, fd, fd] }) → { pid, syncFd }
Napi::Value Spawn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  std::string init_path = o.Get("initPath").As<Napi::String>();
  Napi::Buffer<uint8_t> plan = o.Get("plan").As<Napi::Buffer<uint8_t>>();
  uint64_t flags = (uint64_t)o.Get("cloneFlags").As<Napi::Number>().Int64Value();
  Napi::Array stdio = o.Get("stdio").As<Napi::Array>();
  int in_fds[3];
  for (uint32_t i = 0; i < 3; i++) in_fds[i] = stdio.Get(i).As<Napi::Number>().Int32Value();

  int err = 0;
  int init_fd = SealedInit(init_path, &err);
  if (init_fd < 0) throw ErrnoError(env, "open " + init_path, err);

  int plan_fd = (int)syscall(SYS_memfd_create, "tsrun-plan", MFD_CLOEXEC);
  if (plan_fd < 0) throw ErrnoError(env, "memfd_create", errno);
  if (!WriteAll(plan_fd, plan.Data(), plan.Length())) {
    err = errno;
    close(plan_fd);
    throw ErrnoError(env, "write plan", err);
  }
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
    err = errno;
    close(plan_fd);
    throw ErrnoError(env, "socketpair", err);
  }

  // Raw clone without a new stack behaves like fork(): the child gets a copy of this
  // (multithreaded) process with only the calling thread, so until execveat it may make
  // async-signal-safe syscalls only (design.md trap 4). Namespace flags go here rather than
  // through unshare, which a multithreaded process may not call for CLONE_NEWUSER.
  pid_t pid = (pid_t)syscall(SYS_clone, (unsigned long)(flags | SIGCHLD), 0, 0, 0, 0);
  if (pid == 0) {
    // Move every source fd above the targets first, so that no dup2 clobbers another source.
    int src[5] = {in_fds[0], in_fds[1], in_fds[2], sv[1], plan_fd};
    int hi[5];
    for (int i = 0; i < 5; i++) {
      hi[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 10);
      if (hi[i] < 0) _exit(INIT_FAILED);
    }
    // Node marks 0-2 close-on-exec (design.md trap 1): dup2 gives clean copies.
    for (int i = 0; i < 5; i++)
      if (dup2(hi[i], i) < 0) _exit(INIT_FAILED);
    syscall(SYS_close_range, 5, ~0U, CLOSE_RANGE_CLOEXEC);
    if (flags & CLONE_NEWUSER) {
      // In a new user namespace this process is still host uid 0, which the namespace does
      // not map: an execve now would drop every capability (capabilities(7): only the
      // namespace's own root keeps them across execve), leaving tsrun-init unable to
      // mount anything. So wait for the parent's maps, take uid/gid 0 *of the namespace*
      // with raw syscalls (glibc's would signal threads that do not exist here), drop the
      // host's supplementary groups, then exec as the namespace's root.
      struct sync_msg m;
      ssize_t r;
      do r = read(3, &m, sizeof m);
      while (r < 0 && errno == EINTR);
      if (r != (ssize_t)sizeof m || m.type != MSG_ID_MAPPED) _exit(INIT_FAILED);
      if (syscall(SYS_setgroups, 0, nullptr) < 0 || syscall(SYS_setresgid, 0, 0, 0) < 0 ||
          syscall(SYS_setresuid, 0, 0, 0) < 0) {
        struct sync_msg e = {MSG_ERROR, INDEX_ID_SWITCH, errno, 0};
        ssize_t ignored = write(3, &e, sizeof e);
        (void)ignored;
        _exit(INIT_FAILED);
      }
    }
    char arg0[] = "tsrun-init", arg1[] = "--tsrun-init-v1";
    char* argv[] = {arg0, arg1, nullptr};
    char* envp[] = {nullptr};
    syscall(SYS_execveat, init_fd, "", argv, envp, AT_EMPTY_PATH);
    struct sync_msg m = {MSG_ERROR, INDEX_EXEC, errno, 0};
    ssize_t ignored = write(3, &m, sizeof m);
    (void)ignored;
    _exit(INIT_FAILED);
  }
  err = errno;
  close(sv[1]);
  close(plan_fd);
  if (pid < 0) {
    close(sv[0]);
    throw ErrnoError(env, "clone", err);
  }
  Napi::Object r = Napi::Object::New(env);
  r.Set("pid", Napi::Number::New(env, pid));
  r.Set("syncFd", Napi::Number::New(env, sv[0]));
  return r;
}

// syncSend(fd, type[, passFd])
Napi::Value SyncSend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct sync_msg m = {(uint32_t)info[1].As<Napi::Number>().Uint32Value(), 0, 0, 0};
  struct iovec iov = {&m, sizeof m};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  memset(&u, 0, sizeof u);
  struct msghdr mh = {};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (info.Length() > 2 && info[2].IsNumber()) {
    int pass = info[2].As<Napi::Number>().Int32Value();
    mh.msg_control = u.buf;
    mh.msg_controllen = sizeof u.buf;
    struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &pass, sizeof pass);
  }
  ssize_t r;
  do r = sendmsg(fd, &mh, MSG_NOSIGNAL);
  while (r < 0 && errno == EINTR);
  if (r < 0) throw ErrnoError(env, "sendmsg", errno);
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

Napi::Value StrError(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), strerror(info[0].As<Napi::Number>().Int32Value()));
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
  return exports;
}

}  // namespace

NODE_API_MODULE(tsrun, Init)
