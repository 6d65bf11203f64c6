// httpPost(): one OTLP/HTTP request over plain TCP, sent from a thread of its own. The metrics exporter hands it the
// bytes that OpenTelemetry's serializer made (src/export-native.ts), so the request never passes through Node's own
// HTTP, stream and socket functions in JavaScript: the application's optimised code of those functions stays as it
// was (docs/benchmark.md, "Shared CPU"), and no second V8 isolate is needed (a worker thread costs 12-15 MB).
//
// Deliberately small: HTTP/1.1, one request per connection (Connection: close; an export every few seconds does not
// need keep-alive), `http://` only (TLS and gRPC stay with OpenTelemetry's exporters on the JavaScript side), gzip
// with the zlib the addon links anyway. It reports the status code, Retry-After and the body of a 2xx answer (OTLP's
// partial success); retries, timeouts of the whole export, headers and compression come from OpenTelemetry's
// configuration in JavaScript.
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "addon.h"

namespace otel_ebpf {

namespace {

using Clock = std::chrono::steady_clock;

struct Post {
  // request
  std::string host;
  std::string port;
  std::string head;  // request line and headers, up to the empty line
  std::vector<uint8_t> body;
  bool gzip = false;
  // the body of a 2xx answer too: for httpPost, whose caller reports a partial success; httpPostSync (the last export
  // of an exiting process) does not wait for it
  bool read_body = false;
  Clock::time_point deadline;
  // result: a status code, or an errno and the step that failed
  int status = 0;
  std::string retry_after;
  std::string response_body;  // of a 2xx answer, when it has one that ReadBody() can delimit
  int err = 0;
  std::string step;
  std::string detail;  // instead of the errno's text
};

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

bool Fail(Post& post, const char* step, int err) {
  post.step = step;
  post.err = err;
  return false;
}

// Waits until fd is ready for `events` or the deadline passes (ETIMEDOUT).
bool Wait(Post& post, int fd, short events, const char* step) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(post.deadline - Clock::now()).count();
    if (left <= 0) return Fail(post, step, ETIMEDOUT);
    pollfd p = {fd, events, 0};
    int n = poll(&p, 1, static_cast<int>(std::min<int64_t>(left, INT_MAX)));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return Fail(post, step, errno);
  }
}

bool Gzip(Post& post) {
  z_stream z = {};
  // windowBits 15 + 16: a gzip header and trailer instead of zlib's
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return Fail(post, "gzip", ENOMEM);
  }
  std::vector<uint8_t> out(deflateBound(&z, post.body.size()));
  z.next_in = post.body.data();
  z.avail_in = static_cast<uInt>(post.body.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  if (rc != Z_STREAM_END) return Fail(post, "gzip", EIO);
  post.body.swap(out);
  return true;
}

// The addon's threads are named "otel-ebpf-...": bpf/files.bpf.c leaves the files they open (the resolver's
// /etc/hosts and /etc/resolv.conf) out of the application's file.io, and `top -H` tells them from the application's.
void NameThisThread(const char* name) { pthread_setname_np(pthread_self(), name); }

// A getaddrinfo() that a thread of its own runs, so that the export's deadline bounds it: the resolver's own timeouts
// (resolv.conf: 5 s per try and server by default) would otherwise hold the export, and with it the event loop of an
// application that is ending, well past OTEL_EXPORTER_OTLP_TIMEOUT. A lookup still running at the deadline is left
// to finish on its own thread, which frees what it found.
struct Lookup {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  bool abandoned = false;
  int rc = 0;
  int err = 0;
  addrinfo* found = nullptr;
};

addrinfo* Resolve(Post& post) {
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  int rc, err = 0;
  // an address needs no lookup (and no thread)
  hints.ai_flags = AI_NUMERICHOST;
  rc = getaddrinfo(post.host.c_str(), post.port.c_str(), &hints, &found);
  if (rc == EAI_NONAME) {
    hints.ai_flags = 0;
    auto lookup = std::make_shared<Lookup>();
    try {
      std::thread([lookup, hints, host = post.host, port = post.port] {
        NameThisThread("otel-ebpf-dns");
        addrinfo* found = nullptr;
        int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
        int err = errno;
        std::lock_guard<std::mutex> lock(lookup->mu);
        if (lookup->abandoned) {
          if (rc == 0) freeaddrinfo(found);
          return;
        }
        lookup->done = true;
        lookup->rc = rc;
        lookup->err = err;
        lookup->found = found;
        lookup->cv.notify_one();
      }).detach();
    } catch (const std::system_error& e) {
      Fail(post, "resolve", e.code().value());
      return nullptr;
    }
    std::unique_lock<std::mutex> lock(lookup->mu);
    if (!lookup->cv.wait_until(lock, post.deadline, [&] { return lookup->done; })) {
      lookup->abandoned = true;
      Fail(post, "resolve", ETIMEDOUT);
      return nullptr;
    }
    rc = lookup->rc;
    err = lookup->err;
    found = lookup->found;
  } else if (rc == EAI_SYSTEM) {
    err = errno;
  }
  if (rc != 0) {
    Fail(post, "resolve", rc == EAI_SYSTEM ? err : EHOSTUNREACH);
    if (rc != EAI_SYSTEM) post.detail = gai_strerror(rc);
    return nullptr;
  }
  return found;
}

int Connect(Post& post) {
  addrinfo* found = Resolve(post);
  if (found == nullptr) return -1;
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> addresses(found, freeaddrinfo);
  int err = EHOSTUNREACH;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      err = errno;
      continue;
    }
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) return fd;
    err = errno;
    if (err == EINPROGRESS && Wait(post, fd, POLLOUT, "connect")) {
      socklen_t len = sizeof(err);
      if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) return fd;
    } else if (err == EINPROGRESS) {
      err = post.err;
    }
    close(fd);
  }
  Fail(post, "connect", err);
  return -1;
}

bool SendAll(Post& post, int fd, const uint8_t* data, size_t size) {
  while (size > 0) {
    ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
    if (n > 0) {
      data += n;
      size -= static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!Wait(post, fd, POLLOUT, "send")) return false;
    } else {
      return Fail(post, "send", n < 0 ? errno : EPIPE);
    }
  }
  return true;
}

// The value of header `name` (lower case) in a response head, or "".
std::string Header(const std::string& head, const std::string& name) {
  size_t line = head.find("\r\n");
  while (line != std::string::npos && line + 2 < head.size()) {
    size_t start = line + 2;
    size_t end = head.find("\r\n", start);
    std::string field = head.substr(start, end == std::string::npos ? std::string::npos : end - start);
    size_t colon = field.find(':');
    if (colon == name.size() && strncasecmp(field.c_str(), name.c_str(), colon) == 0) {
      size_t value = field.find_first_not_of(" \t", colon + 1);
      return value == std::string::npos ? "" : field.substr(value);
    }
    line = end;
  }
  return "";
}

// Appends what the response has next to `into`, waiting for it until the deadline: the bytes read, 0 at the
// connection's end, -1 on an error (post.err and post.step say which).
ssize_t ReceiveInto(Post& post, int fd, std::string& into) {
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n >= 0) {
      into.append(buf, static_cast<size_t>(n));
      return n;
    }
    if (errno != EAGAIN && errno != EINTR) {
      Fail(post, "response", errno);
      return -1;
    }
    if (!Wait(post, fd, POLLIN, "response")) return -1;
  }
}

constexpr size_t kMaxResponseBody = 64 * 1024;

// A chunked body (RFC 9112, 7.1) from what was read of it: 1 when it is whole (into *out), 0 when more is needed, -1
// when it is malformed or over kMaxResponseBody. Chunk extensions are passed over; trailer fields are not kept.
int Dechunk(const std::string& in, std::string* out) {
  std::string body;
  size_t at = 0;
  for (;;) {
    size_t eol = in.find("\r\n", at);
    if (eol == std::string::npos) return 0;
    const char* digits = in.c_str() + at;
    char* end = nullptr;
    unsigned long long size = strtoull(digits, &end, 16);
    if (end == digits || (end != in.c_str() + eol && *end != ';' && *end != ' ' && *end != '\t')) return -1;
    if (size > kMaxResponseBody - body.size()) return -1;
    at = eol + 2;
    if (size == 0) {  // the last chunk, then trailer fields, if any, up to an empty line
      if (in.compare(at, 2, "\r\n") != 0 && in.find("\r\n\r\n", at) == std::string::npos) return 0;
      *out = std::move(body);
      return 1;
    }
    if (in.size() < at + size + 2) return 0;
    body.append(in, at, size);
    at += size + 2;  // the chunk and its CRLF
  }
}

// The body of a 2xx answer: where a backend says it took the request but rejected some of it (OTLP's partial success,
// "N data points rejected, because ..."), which OpenTelemetry's export delegate decodes and reports. Delimited by
// Content-Length, by chunks, or by the connection's end where the server says it closes; not kept over 64 KiB. Not
// getting it does not fail the export: the status said the request was taken. `rest` is what came after the head.
void ReadBody(Post& post, int fd, const std::string& head, std::string rest) {
  const std::string encoding = Header(head, "transfer-encoding");
  const bool chunked = strcasecmp(encoding.c_str(), "chunked") == 0;
  const std::string length = Header(head, "content-length");
  size_t want = SIZE_MAX;  // until the connection ends
  if (chunked) {
    // framed by its chunks
  } else if (!encoding.empty()) {
    return;  // another transfer coding: not for an OTLP answer
  } else if (!length.empty()) {
    char* end = nullptr;
    unsigned long long n = strtoull(length.c_str(), &end, 10);
    if (end == length.c_str() || *end != '\0' || n > kMaxResponseBody) return;
    want = static_cast<size_t>(n);
  } else if (strcasecmp(Header(head, "connection").c_str(), "close") != 0) {
    return;  // no way to tell where it ends
  }
  for (;;) {
    if (chunked) {
      std::string body;
      int whole = Dechunk(rest, &body);
      if (whole < 0) return;
      if (whole > 0) {
        post.response_body = std::move(body);
        return;
      }
    } else if (rest.size() >= want) {
      rest.resize(want);
      post.response_body = std::move(rest);
      return;
    }
    if (rest.size() > 2 * kMaxResponseBody) return;
    ssize_t n = ReceiveInto(post, fd, rest);
    if (n < 0) {
      post.err = 0;  // the deadline passed, or the connection failed: the export stands, without the body
      post.step.clear();
      return;
    }
    if (n == 0) {
      if (want == SIZE_MAX && !chunked && rest.size() <= kMaxResponseBody) post.response_body = std::move(rest);
      return;
    }
  }
}

// Reads the response up to the end of its head, then parses the status line. Interim (1xx) responses are passed over, as RFC 9110 asks of a client; a head that
// the connection's end cuts short is no answer (EPROTO).
bool ReadStatus(Post& post, int fd) {
  std::string response;
  for (;;) {
    size_t end;
    while ((end = response.find("\r\n\r\n")) == std::string::npos) {
      if (response.size() > 64 * 1024) return Fail(post, "response", EMSGSIZE);
      ssize_t n = ReceiveInto(post, fd, response);
      if (n < 0) return false;
      if (n == 0) return Fail(post, "response", EPROTO);
    }
    // "HTTP/1.1 200 OK"
    if (response.compare(0, 5, "HTTP/") != 0) return Fail(post, "response", EPROTO);
    size_t space = response.find(' ');
    if (space == std::string::npos || space > end) return Fail(post, "response", EPROTO);
    post.status = atoi(response.c_str() + space + 1);
    if (post.status < 100 || post.status > 599) return Fail(post, "response", EPROTO);
    if (post.status >= 200) {
      std::string head = response.substr(0, end);
      post.retry_after = Header(head, "retry-after");
      if (post.read_body && post.status <= 299) ReadBody(post, fd, head, response.substr(end + 4));
      return true;
    }
    response.erase(0, end + 4);
  }
}

void Run(Post& post) {
  if (post.gzip && !Gzip(post)) return;
  Fd fd(Connect(post));
  if (fd.get() < 0) return;
  std::string head = post.head + "Content-Length: " + std::to_string(post.body.size()) + "\r\n\r\n";
  if (!SendAll(post, fd.get(), reinterpret_cast<const uint8_t*>(head.data()), head.size()) ||
      !SendAll(post, fd.get(), post.body.data(), post.body.size())) {
    // A server may answer before it has read the whole request (413, say) and close: the answer, already received,
    // says more than the reset that cut the sending short.
    if (post.err != EPIPE && post.err != ECONNRESET) return;
    const int err = post.err;
    const std::string step = post.step;
    post.err = 0;
    if (!ReadStatus(post, fd.get())) {
      post.err = err;
      post.step = step;
    }
    return;
  }
  ReadStatus(post, fd.get());
}

std::string StringProperty(Napi::Object options, const char* name) {
  Napi::Value v = options.Get(name);
  if (!v.IsString()) ThrowBpfError(options.Env(), "http", EINVAL, "httpPost", std::string(name) + " must be a string");
  return v.As<Napi::String>();
}

// The request that httpPost / httpPostSync describe in their options object.
std::shared_ptr<Post> PostOf(const Napi::CallbackInfo& info, const char* api) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) ThrowBpfError(env, "http", EINVAL, api, "options must be an object");
  Napi::Object options = info[0].As<Napi::Object>();
  auto post = std::make_shared<Post>();
  post->host = StringProperty(options, "host");
  post->port = StringProperty(options, "port");
  post->head = StringProperty(options, "head");
  Napi::Value body = options.Get("body");
  if (!body.IsTypedArray()) ThrowBpfError(env, "http", EINVAL, api, "body must be a Uint8Array");
  Napi::Uint8Array bytes = body.As<Napi::Uint8Array>();
  post->body.assign(bytes.Data(), bytes.Data() + bytes.ByteLength());
  post->gzip = options.Get("gzip").ToBoolean();
  // a deadline already passed fails at the first wait (ETIMEDOUT); no number at all: OpenTelemetry's default, 10 s
  double timeout = options.Get("timeoutMs").ToNumber().DoubleValue();
  // at most INT_MAX ms (24.8 days), so that the deadline cannot overflow the clock
  int64_t timeout_ms = std::isfinite(timeout) ? static_cast<int64_t>(std::clamp(timeout, 0.0, double(INT_MAX))) : 10000;
  post->deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  return post;
}

// { status, retryAfter? } of a post that ran, or the BpfError of the step that failed.
Napi::Value ResultOf(Napi::Env env, const Post& post, bool* failed) {
  if (post.err != 0) {
    std::string step = "http " + post.step;
    *failed = true;
    return MakeBpfError(env, step.c_str(), post.err, post.host + ":" + post.port, post.detail);
  }
  *failed = false;
  Napi::Object result = Napi::Object::New(env);
  result.Set("status", post.status);
  if (!post.retry_after.empty()) result.Set("retryAfter", post.retry_after);
  if (!post.response_body.empty()) {
    const auto* data = reinterpret_cast<const uint8_t*>(post.response_body.data());
    result.Set("body", Napi::Buffer<uint8_t>::Copy(env, data, post.response_body.size()));
  }
  return result;
}

}  // namespace

Napi::Value Addon::HttpPost(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<Post> post = PostOf(info, "httpPost");
  post->read_body = true;
  auto deferred = std::make_shared<Napi::Promise::Deferred>(env);
  // The function keeps the event loop alive until the thread has answered: an export in flight at exit still leaves.
  auto done = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}),
                                            "otel-node-ebpf:httpPost", 0, 1);
  try {
    // The thread inherits this one's signal mask: with every signal blocked, signals meant for the process go to the
    // application's threads, as with libuv's thread pool.
    SignalsBlocked inherited(SignalsBlocked::kAll);
    std::thread([post, deferred, done]() mutable {
      NameThisThread("otel-ebpf-send");
      Run(*post);
      done.BlockingCall([post, deferred](Napi::Env env, Napi::Function) {
        bool failed;
        Napi::Value result = ResultOf(env, *post, &failed);
        if (failed) deferred->Reject(result);
        else deferred->Resolve(result);
      });
      done.Release();
    }).detach();
  } catch (const std::system_error& e) {
    done.Release();
    deferred->Reject(MakeBpfError(env, "http thread", e.code().value(), post->host + ":" + post->port));
  }
  return deferred->Promise();
}

// httpPostSync(options): the same request on the calling thread, which it blocks until the answer or the deadline.
// Only for the last export of a process that is exiting (process.exit(): no turn of the event loop is left).
Napi::Value Addon::HttpPostSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<Post> post = PostOf(info, "httpPostSync");
  Run(*post);
  bool failed;
  Napi::Value result = ResultOf(env, *post, &failed);
  if (failed) throw Napi::Error(env, result);
  return result;
}

}  // namespace otel_ebpf
