// The native addon: a thin wrapper over libbpf (objects, programs, links, maps, ring buffers) for
// src/native.ts. It knows nothing about metrics.
//
// Ownership: every libbpf resource belongs to an ObjectState (shared_ptr). The JavaScript wrappers hold that
// shared_ptr, and children (maps, links, ring buffers) also hold a strong reference to their object's wrapper so
// that it is not collected under them. ObjectState::Close() frees links, ring buffers and the bpf_object exactly
// once; it runs on close(), when the object's wrapper is collected, and from an environment cleanup hook.
//
// Errors: every failure throws the class given to setErrorClass(), built by ThrowBpfError(); see errors.cc.
#pragma once

#include <napi.h>
#include <signal.h>
#include <uv.h>

#include <bpf/libbpf.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace otel_ebpf {

// ---- errors.cc -------------------------------------------------------------------------------------------------

// Routes libbpf's WARN and INFO messages into the innermost LogCapture of the calling thread; DEBUG messages and
// messages outside a capture are dropped. Installed once per process (libbpf_set_print is process-wide).
void InstallLibbpfPrint();

// While alive, collects libbpf's messages on this thread (captures nest; the innermost one collects).
class LogCapture {
 public:
  LogCapture();
  ~LogCapture();
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;
  // What was captured, limited to its last 64 KiB (a verifier rejection is explained at the end).
  std::string Tail() const;
  void Append(const char* text, size_t len);

 private:
  std::string text_;
  LogCapture* outer_;
};

// While alive, this thread blocks signals (pthread_sigmask), then its mask is restored. kAsynchronous leaves the
// synchronous ones (faults: SIGSEGV, SIGBUS, ...) alone; kAll blocks everything, for a thread to be created with
// that mask (a thread inherits its creator's).
class SignalsBlocked {
 public:
  enum Which { kAsynchronous, kAll };
  explicit SignalsBlocked(Which which);
  ~SignalsBlocked();
  SignalsBlocked(const SignalsBlocked&) = delete;
  SignalsBlocked& operator=(const SignalsBlocked&) = delete;

 private:
  sigset_t saved_;
};

// The errno name ("EPERM"), or "E<number>" for a number without one.
std::string ErrnoName(int err);
// strerror() for errno values, libbpf's texts for LIBBPF_ERRNO__* values.
std::string ErrnoText(int err);

// Throws `new BpfError(message, step, err, code, log)` as a C++ exception (node-addon-api turns it into a JS
// exception). The message is "<step> <subject>: <detail or strerror> (<CODE>)". err is positive.
[[noreturn]] void ThrowBpfError(Napi::Env env, const char* step, int err, const std::string& subject,
                                const std::string& detail = "", const std::string& log = "");
// Builds the same error without throwing (for callbacks that run outside a JS call).
Napi::Value MakeBpfError(Napi::Env env, const char* step, int err, const std::string& subject,
                         const std::string& detail = "", const std::string& log = "");

// ---- state shared by the wrappers -----------------------------------------------------------------------------

struct RingState;
void CloseRing(RingState* ring);  // ringbuf.cc; idempotent

// One attached link: a libbpf bpf_link, or the fd of a link that this libbpf cannot make (uprobe_multi).
struct LinkState {
  bpf_link* link = nullptr;
  int fd = -1;
  std::string what;  // "kprobe/tcp_sendmsg (handle_send_kprobe)", for messages
  int Destroy();     // idempotent; returns the result of the first destroy (libbpf's, or -errno of close)
  ~LinkState() { Destroy(); }
};

struct ObjectState {
  bpf_object* obj = nullptr;  // null once closed
  std::string path;
  std::string name;  // file name, for messages
  bool load_attempted = false;  // libbpf allows one bpf_object__load, successful or not
  bool loaded = false;
  std::vector<std::shared_ptr<LinkState>> links;
  std::vector<std::shared_ptr<RingState>> rings;

  ObjectState() = default;
  ObjectState(const ObjectState&) = delete;
  ObjectState& operator=(const ObjectState&) = delete;
  ~ObjectState() { Close(); }

  bool closed() const { return obj == nullptr; }
  void Close();  // idempotent
  // Like Close(), but the kernel-side teardown (detaching links, closing the object's fds) runs on a thread of its own:
  // detaching a uprobe waits for RCU grace periods, about 110 ms each here, which must not stall the event loop.
  void CloseInBackground();
  bpf_map* FindMap(const std::string& map_name) const;
  bpf_program* FindProgram(const std::string& program_name) const;
  void ForgetLink(const LinkState* link);
  void ForgetRing(const RingState* ring);
};

// "kprobe/tcp_sendmsg (handle_send_kprobe)"
std::string DescribeProgram(const bpf_program* prog);

// ---- per-environment state (addon.cc) --------------------------------------------------------------------------

class Addon : public Napi::Addon<Addon> {
 public:
  Addon(Napi::Env env, Napi::Object exports);
  ~Addon();
  Addon(const Addon&) = delete;
  Addon& operator=(const Addon&) = delete;

  static Addon& Of(Napi::Env env) { return *env.GetInstanceData<Addon>(); }

  Napi::FunctionReference error_class;  // set by setErrorClass(); empty until then
  Napi::FunctionReference object_class, map_class, link_class, ring_class, stats_class;
  uv_loop_t* loop = nullptr;

  void Track(const std::shared_ptr<ObjectState>& state);

 private:
  Napi::Value SetErrorClass(const Napi::CallbackInfo& info);
  Napi::Value Open(const Napi::CallbackInfo& info);
  Napi::Value EnableStats(const Napi::CallbackInfo& info);
  Napi::Value LibbpfVersion(const Napi::CallbackInfo& info);
  Napi::Value LoopBackendFd(const Napi::CallbackInfo& info);
  void TrimMemory(const Napi::CallbackInfo& info);
  Napi::Value ProbeProgramType(const Napi::CallbackInfo& info);
  Napi::Value Calibrate(const Napi::CallbackInfo& info);
  Napi::Value TcpInfoReader(const Napi::CallbackInfo& info);  // tcp.cc
  Napi::Value SocketCookie(const Napi::CallbackInfo& info);   // tcp.cc
  Napi::Value TcpSocketReader(const Napi::CallbackInfo& info);  // tcp.cc
  Napi::Value ListeningTcpPorts(const Napi::CallbackInfo& info);  // tcp.cc
  Napi::Value HttpPost(const Napi::CallbackInfo& info);      // http.cc
  Napi::Value HttpPostSync(const Napi::CallbackInfo& info);  // http.cc

  static void CloseAll(void* arg);  // environment cleanup hook
  std::vector<std::weak_ptr<ObjectState>> objects_;
  napi_env env_;
  bool cleanup_hook_pending_ = false;
};

// ---- wrappers (object.cc, map.cc, ringbuf.cc, addon.cc) -------------------------------------------------------

// Classes are created only from C++: their constructors require this token (an External) as first argument.
Napi::External<void> ConstructToken(Napi::Env env);
void CheckConstructToken(const Napi::CallbackInfo& info);

Napi::Function DefineObjectClass(Napi::Env env);
Napi::Function DefineLinkClass(Napi::Env env);
Napi::Function DefineMapClass(Napi::Env env);
Napi::Function DefineRingClass(Napi::Env env);
Napi::Function DefineStatsClass(Napi::Env env);

// Constructors of the child wrappers; `owner` is the NativeObject wrapper they keep alive.
Napi::Object NewLink(Napi::Env env, Napi::Object owner, std::shared_ptr<ObjectState> state,
                     std::shared_ptr<LinkState> link);
Napi::Object NewMap(Napi::Env env, Napi::Object owner, std::shared_ptr<ObjectState> state, const std::string& name,
                    bpf_map* map);
Napi::Object NewRingBuffer(Napi::Env env, Napi::Object owner, std::shared_ptr<ObjectState> state,
                           const std::string& map_name, bpf_map* map, Napi::Function on_records);
Napi::Object NewStatsHandle(Napi::Env env, int fd);
Napi::Value OpenObject(Napi::Env env, const std::string& path, const std::string& btf_custom_path = "");

// Base of the wrappers that belong to a NativeObject (map, link, ring buffer): made only by the addon, never copied,
// sharing the object's state and holding a strong reference to the object's wrapper, so that the object is not
// collected while one of its children is reachable. A child that is collected releases only that reference: links
// and ring buffers belong to the object, which frees them on close.
template <typename T>
class ChildWrap : public Napi::ObjectWrap<T> {
 public:
  explicit ChildWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<T>(info) { CheckConstructToken(info); }
  ChildWrap(const ChildWrap&) = delete;
  ChildWrap& operator=(const ChildWrap&) = delete;

 protected:
  void Adopt(Napi::Object owner, std::shared_ptr<ObjectState> state) {
    owner_ = Napi::Persistent(owner);
    state_ = std::move(state);
  }
  bool ObjectClosed() const { return !state_ || state_->closed(); }

  Napi::ObjectReference owner_;
  std::shared_ptr<ObjectState> state_;
};

// Argument helpers: a wrong argument is a BpfError (EINVAL) of the method's step, like every other failure.
std::string StringArg(const Napi::CallbackInfo& info, size_t index, const char* step, const char* what);
Napi::Buffer<uint8_t> BufferArg(const Napi::CallbackInfo& info, size_t index, const char* step, const char* what);

}  // namespace otel_ebpf
