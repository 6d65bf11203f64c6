// The process's own TCP sockets, read from user space: the kernel's per-connection counters (TCP_INFO) of one fd,
// or of every TCP socket the process holds. No BPF and no privilege: getsockopt() on our own descriptors. The
// counters are exact and cost nothing while the connection carries data; BPF only has to catch connections that
// end between two reads (bpf/sockets.bpf.c reads the same counters when the socket is destroyed).
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <unordered_map>
#include <vector>

#include "addon.h"
#include "tcp_info.h"

namespace otel_ebpf {

namespace {

constexpr int kSlots = OTEL_TCP_INFO_SLOTS;
constexpr double kListen = 10;  // TCP_LISTEN (include/net/tcp_states.h)

Napi::Value Address(Napi::Env env, const sockaddr_storage& sa, int* port) {
  char text[INET6_ADDRSTRLEN] = "";
  if (sa.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&sa);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
    *port = ntohs(in->sin_port);
  } else if (sa.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
    *port = ntohs(in6->sin6_port);
  }
  return Napi::String::New(env, text);
}

// A function of tcpInfoReader(): fd -> 0 or -errno, TCP_INFO into the reader's own array. Called per span, so it
// takes the shortest N-API path: plain N-API (it cannot fail, so node-addon-api's exception wrapper has nothing to
// do), one argument, the array's data pointer resolved once. Resolving the array on every call (napi_get_typedarray_info
// and V8's buffer look-up), as a tcpInfo(fd, out) did, cost about 500 ns more per call here (docs/benchmark.md).
struct ReaderState {
  Napi::Reference<Napi::Float64Array> array;  // keeps `out` (and so `slots`) alive as long as the function
  double* slots;
};

napi_value ReadTcpInfo(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 1;
  napi_value arg;
  void* data = nullptr;
  int32_t fd = -1;
  napi_value result = nullptr;
  if (napi_get_cb_info(env, cbinfo, &argc, &arg, nullptr, &data) != napi_ok) return nullptr;
  // Not a number: -EBADF from the kernel, like any other fd that is not ours.
  if (argc < 1 || napi_get_value_int32(env, arg, &fd) != napi_ok) fd = -1;
  napi_create_int32(env, otel_read_tcp_info(fd, static_cast<ReaderState*>(data)->slots), &result);
  return result;
}

// One socket's record: { fd, family (4|6), localAddress, localPort, peerAddress, peerPort, info: Float64Array }, or
// an empty value for an fd that is not an IPv4/IPv6 socket any more. `*info` receives the record's `info`.
Napi::Object SocketRecord(Napi::Env env, int fd, const double* slots, Napi::Float64Array* info) {
  sockaddr_storage local = {}, peer = {};
  socklen_t local_len = sizeof(local), peer_len = sizeof(peer);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0) return Napi::Object();
  if (local.ss_family != AF_INET && local.ss_family != AF_INET6) return Napi::Object();
  bool connected = getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) == 0;
  int local_port = 0, peer_port = 0;
  Napi::Object socket = Napi::Object::New(env);
  socket.Set("fd", fd);
  socket.Set("family", local.ss_family == AF_INET ? 4 : 6);
  socket.Set("localAddress", Address(env, local, &local_port));
  socket.Set("localPort", local_port);
  if (connected) {
    socket.Set("peerAddress", Address(env, peer, &peer_port));
    socket.Set("peerPort", peer_port);
  }
  *info = Napi::Float64Array::New(env, kSlots);
  std::copy(slots, slots + kSlots, info->Data());
  socket.Set("info", *info);
  return socket;
}

// The counters that say whether a socket carried anything since a previous reading.
struct Moved {
  double state, sent, retrans, received, notsent;
  bool operator==(const Moved& o) const {
    return state == o.state && sent == o.sent && retrans == o.retrans && received == o.received && notsent == o.notsent;
  }
};

// What a reader keeps of one fd between two calls: the counters it saw, and the record it returned for the socket, to
// return again (with new counters) while the fd holds the same socket: the addresses of a connected or listening
// socket do not change, and building a record (two more system calls, two strings, an object and a typed array) cost
// most of a collection for a busy connection (docs/benchmark.md).
struct Kept {
  Moved moved;
  uint64_t cookie = 0;  // SO_COOKIE of the socket `record` describes; 0: no record kept
  Napi::ObjectReference record;
  Napi::Reference<Napi::Float64Array> info;  // record.info, held on its own: `slots` is its data
  double* slots = nullptr;
};

// The socket's cookie (SO_COOKIE: unique since boot, never reused), or 0 if the kernel does not give one.
uint64_t Cookie(int fd) {
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  return getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) == 0 ? cookie : 0;
}

// The process's fds, listed in fd order a few at a time: glibc's readdir() fetches up to 32 KB of entries per
// system call (about 1300 fds, a millisecond in the kernel), more than one step of a pass should take.
class FdListing {
 public:
  FdListing() = default;
  FdListing(const FdListing&) = delete;
  FdListing& operator=(const FdListing&) = delete;
  ~FdListing() { Close(); }
  bool open() const { return dir_ >= 0; }
  bool Open() {
    dir_ = ::open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    length_ = position_ = 0;
    return dir_ >= 0;
  }
  void Close() {
    if (dir_ >= 0) close(dir_);
    dir_ = -1;
  }
  // The next fd (the listing's own left out), or -1 at the end.
  int Next() {
    for (;;) {
      if (position_ >= length_) {
        length_ = getdents64(dir_, buffer_, sizeof(buffer_));
        position_ = 0;
        if (length_ <= 0) return -1;
      }
      const auto* entry = reinterpret_cast<const dirent64*>(buffer_ + position_);
      position_ += entry->d_reclen;
      if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
      int fd = atoi(entry->d_name);
      if (fd != dir_) return fd;
    }
  }

 private:
  int dir_ = -1;
  alignas(dirent64) char buffer_[4096];  // about 170 entries
  ssize_t length_ = 0;
  ssize_t position_ = 0;
};

// A tcpSocketReader()'s state: a pass over the process's fds, which may take several calls.
struct Pass {
  std::unordered_map<int, Kept> previous;  // per fd, as the last complete pass left it
  std::unordered_map<int, Kept> now;       // per fd, the pass in progress
  FdListing fds;                           // open while a pass is in progress
  bool ended = false;                      // a pass in steps ended at the previous call: the next one says so

  // Reads fd (an fd that may have been closed, or reused for another file, since the listing): adds its record at
  // out[n++] if it is a TCP socket whose counters moved since the previous pass, or a listening one.
  void Read(Napi::Env env, int fd, Napi::Array out, uint32_t& n) {
    double slots[kSlots];
    if (otel_read_tcp_info(fd, slots) != 0) return;
    Moved moved{slots[OTEL_TCP_STATE], slots[OTEL_TCP_BYTES_SENT], slots[OTEL_TCP_BYTES_RETRANS],
                slots[OTEL_TCP_BYTES_RECEIVED], slots[OTEL_TCP_NOTSENT_BYTES]};
    bool listening = slots[OTEL_TCP_STATE] == kListen;
    Kept& kept = now[fd];
    auto before = previous.find(fd);
    bool seen = before != previous.end();
    if (seen) kept = std::move(before->second);
    if (seen && kept.moved == moved && !listening) return;
    kept.moved = moved;
    uint64_t cookie = Cookie(fd);
    if (cookie != 0 && cookie == kept.cookie) {
      std::copy(slots, slots + kSlots, kept.slots);
      out.Set(n++, kept.record.Value());
      return;
    }
    Napi::Float64Array values;
    Napi::Object record = SocketRecord(env, fd, slots, &values);
    kept.cookie = 0;
    kept.record.Reset();
    kept.info.Reset();
    if (record.IsEmpty()) return;
    // Kept once its addresses are final: a connect in progress has no peer yet.
    if (cookie != 0 && (listening || record.Has("peerPort"))) {
      kept.cookie = cookie;
      kept.record = Napi::Persistent(record);
      kept.info = Napi::Persistent(values);
      kept.slots = values.Data();
    }
    out.Set(n++, record);
  }
};

}  // namespace

// tcpInfoReader(out: Float64Array(kSlots)): a function read(fd) that fills `out` with fd's TCP_INFO and returns 0
// or -errno; the per-span path (see ReadTcpInfo).
Napi::Value Addon::TcpInfoReader(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      info[0].As<Napi::Float64Array>().ElementLength() < kSlots) {
    ThrowBpfError(env, "config", EINVAL, "tcpInfoReader", "argument: a Float64Array of " + std::to_string(kSlots));
  }
  Napi::Float64Array out = info[0].As<Napi::Float64Array>();
  // Data() materialises an on-heap typed array's buffer off the heap: the pointer stays valid while `out` lives.
  auto* reader = new ReaderState{Napi::Persistent(out), out.Data()};
  napi_value fn;
  if (napi_create_function(env, "readTcpInfo", NAPI_AUTO_LENGTH, ReadTcpInfo, reader, &fn) != napi_ok) {
    delete reader;
    ThrowBpfError(env, "config", ENOMEM, "tcpInfoReader", "napi_create_function failed");
  }
  Napi::Function read(env, fn);
  read.AddFinalizer([](Napi::Env, ReaderState* r) { delete r; }, reader);
  return read;
}

// socketCookie(fd): the socket's cookie (SO_COOKIE, Linux 4.12; asking for it makes the kernel give the socket one), or
// -errno. A cookie is a counter of the sockets that were given one since boot: far below 2^53, exact as a double.
Napi::Value Addon::SocketCookie(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : -1;
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) != 0) return Napi::Number::New(env, -errno);
  if (cookie > (uint64_t{1} << 53)) return Napi::Number::New(env, -ERANGE);
  return Napi::Number::New(env, static_cast<double>(cookie));
}

// tcpSocketReader(): a function read(max?) that returns the SocketRecord()s of the process's TCP sockets whose
// counters moved since its previous pass over them (all of them, listening ones included, the first time), and of
// every listening socket. What a collection needs: a connection that carried nothing has nothing to add. An idle
// socket then costs one getsockopt instead of three system calls and a JavaScript object: a process with many
// connections spent most of a collection building those. A socket that moved again gets the record the reader
// returned for it before, with `info` overwritten (one getsockopt more, for the cookie that tells the fd still holds
// that socket): a record is valid until the reader's next call.
//
// read() makes a whole pass. read(max) makes it in steps of `max` fds, one per call, for a process with so many
// sockets that one pass would hold the event loop too long; the call after the last step returns null (and the one
// after that starts a new pass).
Napi::Value Addon::TcpSocketReader(const Napi::CallbackInfo& info) {
  auto state = std::make_shared<Pass>();
  return Napi::Function::New(info.Env(), [state](const Napi::CallbackInfo& call) -> Napi::Value {
    Napi::Env env = call.Env();
    Pass& pass = *state;
    bool steps = call.Length() > 0 && call[0].IsNumber();
    size_t max = steps ? static_cast<size_t>(std::max<int64_t>(1, call[0].As<Napi::Number>().Int64Value())) : SIZE_MAX;
    if (!pass.fds.open()) {
      if (steps && pass.ended) {
        pass.ended = false;
        return env.Null();
      }
      if (!pass.fds.Open()) return steps ? env.Null() : Napi::Array::New(env);  // no /proc: nothing to read
      pass.now.clear();
      pass.now.reserve(pass.previous.size());
    }
    Napi::Array result = Napi::Array::New(env);
    uint32_t n = 0;
    for (size_t read = 0; read < max; read++) {
      int fd = pass.fds.Next();
      if (fd >= 0) {
        pass.Read(env, fd, result, n);
        continue;
      }
      pass.fds.Close();
      pass.previous.swap(pass.now);
      pass.now.clear();
      pass.ended = steps;
      break;
    }
    return result;
  }, "readTcpSockets");
}

namespace {

// One NETLINK_SOCK_DIAG dump of the namespace's TCP sockets of `family` in LISTEN: their local ports, appended to
// `ports`. 0 or -errno.
int DumpListeners(int nl, uint8_t family, std::vector<uint16_t>& ports) {
  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 req;
  } request = {};
  request.nlh.nlmsg_len = sizeof(request);
  request.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  request.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  request.req.sdiag_family = family;
  request.req.sdiag_protocol = IPPROTO_TCP;
  request.req.idiag_states = 1u << 10;  // TCP_LISTEN only: the kernel walks the listening hash, not the connections
  sockaddr_nl kernel = {};
  kernel.nl_family = AF_NETLINK;
  if (sendto(nl, &request, sizeof(request), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0) return -errno;
  alignas(nlmsghdr) char buf[32768];
  for (;;) {
    ssize_t n = recv(nl, buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) return -EIO;
    size_t left = static_cast<size_t>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type == NLMSG_DONE) {
        // a dump that failed after it began (no tcp_diag for the protocol) ends with its error here, not in NLMSG_ERROR
        int err = 0;
        if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(err))) std::memcpy(&err, NLMSG_DATA(h), sizeof(err));
        return err < 0 ? err : 0;
      }
      if (h->nlmsg_type == NLMSG_ERROR) {
        const auto* err = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
        return h->nlmsg_len >= NLMSG_LENGTH(sizeof(nlmsgerr)) && err->error ? err->error : -EIO;
      }
      if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || h->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) continue;
      const auto* msg = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
      if (msg->idiag_state == 10) ports.push_back(ntohs(msg->id.idiag_sport));
    }
  }
}

}  // namespace

// listeningTcpPorts(): the local port of every TCP socket that listens in the process's network namespace, whichever
// process holds it (one entry per socket), from NETLINK_SOCK_DIAG as `ss -tl` reads them; or -errno (no inet_diag in
// this kernel). No privilege needed. The kernel's dump visits only the listening sockets, where /proc/net/tcp prints
// every socket of the namespace as text (about 80 ms with 29,000 sockets here).
Napi::Value Addon::ListeningTcpPorts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (nl < 0) return Napi::Number::New(env, -errno);
  std::vector<uint16_t> ports;
  int err = DumpListeners(nl, AF_INET, ports);
  if (err == 0) {
    err = DumpListeners(nl, AF_INET6, ports);
    if (err == -ENOENT) err = 0;  // no IPv6 in this kernel
  }
  close(nl);
  if (err != 0) return Napi::Number::New(env, err);
  Napi::Array result = Napi::Array::New(env, ports.size());
  for (uint32_t i = 0; i < ports.size(); i++) result.Set(i, Napi::Number::New(env, ports[i]));
  return result;
}

}  // namespace otel_ebpf
