// The module: per-environment state (Addon), the top-level functions of NativeAddon, and the stats handle.
#include <uv.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <malloc.h>
#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <ctime>

extern "C" void otel_node_ebpf_calibrate(void);
extern "C" void otel_node_ebpf_calibrate_stepped(void);

#include "addon.h"

namespace otel_ebpf {

namespace {

int construct_token_tag;  // its address is the token

// The handle returned by enableStats(): run-time statistics stay on while its fd is open.
class JsStatsHandle : public Napi::ObjectWrap<JsStatsHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeStatsHandle", {InstanceMethod<&JsStatsHandle::Close>("close")});
  }
  explicit JsStatsHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<JsStatsHandle>(info) {
    CheckConstructToken(info);
  }
  JsStatsHandle(const JsStatsHandle&) = delete;
  JsStatsHandle& operator=(const JsStatsHandle&) = delete;
  // Collected (or the environment ends): statistics go off with the fd.
  ~JsStatsHandle() override { Release(); }

  void Init(int fd) { fd_ = fd; }

 private:
  void Release() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  void Close(const Napi::CallbackInfo&) { Release(); }

  int fd_ = -1;
};

}  // namespace

SignalsBlocked::SignalsBlocked(Which which) {
  sigset_t blocked;
  sigfillset(&blocked);
  if (which == kAsynchronous) {
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS}) sigdelset(&blocked, sig);
  }
  pthread_sigmask(SIG_BLOCK, &blocked, &saved_);
}

SignalsBlocked::~SignalsBlocked() { pthread_sigmask(SIG_SETMASK, &saved_, nullptr); }

Napi::External<void> ConstructToken(Napi::Env env) { return Napi::External<void>::New(env, &construct_token_tag); }

void CheckConstructToken(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsExternal() || info[0].As<Napi::External<void>>().Data() != &construct_token_tag) {
    ThrowBpfError(info.Env(), "addon", EINVAL, "constructor", "these objects are made by the addon, not with new");
  }
}

std::string StringArg(const Napi::CallbackInfo& info, size_t index, const char* step, const char* what) {
  if (info.Length() <= index || !info[index].IsString()) {
    ThrowBpfError(info.Env(), step, EINVAL, "argument " + std::to_string(index + 1), std::string(what) + " must be a string");
  }
  return info[index].As<Napi::String>();
}

Napi::Buffer<uint8_t> BufferArg(const Napi::CallbackInfo& info, size_t index, const char* step, const char* what) {
  if (info.Length() <= index || !info[index].IsBuffer()) {
    ThrowBpfError(info.Env(), step, EINVAL, "argument " + std::to_string(index + 1), std::string(what) + " must be a Buffer");
  }
  return info[index].As<Napi::Buffer<uint8_t>>();
}

Napi::Function DefineStatsClass(Napi::Env env) { return JsStatsHandle::Define(env); }

Napi::Object NewStatsHandle(Napi::Env env, int fd) {
  Napi::Object wrapper;
  try {
    wrapper = Addon::Of(env).stats_class.New({ConstructToken(env)});
  } catch (...) {
    close(fd);
    throw;
  }
  JsStatsHandle::Unwrap(wrapper)->Init(fd);
  return wrapper;
}

Addon::Addon(Napi::Env env, Napi::Object exports) : env_(env) {
  static std::once_flag print_installed;
  std::call_once(print_installed, InstallLibbpfPrint);

  object_class = Napi::Persistent(DefineObjectClass(env));
  map_class = Napi::Persistent(DefineMapClass(env));
  link_class = Napi::Persistent(DefineLinkClass(env));
  ring_class = Napi::Persistent(DefineRingClass(env));
  stats_class = Napi::Persistent(DefineStatsClass(env));
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
    throw Napi::Error::New(env, "otel-node-ebpf: no libuv loop in this environment");
  }
  if (napi_add_env_cleanup_hook(env, CloseAll, this) == napi_ok) cleanup_hook_pending_ = true;

  DefineAddon(exports, {
                           InstanceMethod<&Addon::SetErrorClass>("setErrorClass"),
                           InstanceMethod<&Addon::Open>("open"),
                           InstanceMethod<&Addon::EnableStats>("enableStats"),
                           InstanceMethod<&Addon::LibbpfVersion>("libbpfVersion"),
                           InstanceMethod<&Addon::LoopBackendFd>("loopBackendFd"),
                           InstanceMethod<&Addon::ProbeProgramType>("probeProgramType"),
                           InstanceMethod<&Addon::Calibrate>("calibrate"),
                           InstanceMethod<&Addon::TrimMemory>("trimMemory"),
                           InstanceMethod<&Addon::TcpInfoReader>("tcpInfoReader"),
                           InstanceMethod<&Addon::SocketCookie>("socketCookie"),
                           InstanceMethod<&Addon::TcpSocketReader>("tcpSocketReader"),
                           InstanceMethod<&Addon::ListeningTcpPorts>("listeningTcpPorts"),
                           InstanceMethod<&Addon::HttpPost>("httpPost"),
                           InstanceMethod<&Addon::HttpPostSync>("httpPostSync"),
                       });
}

Addon::~Addon() {
  if (cleanup_hook_pending_) {
    napi_remove_env_cleanup_hook(env_, CloseAll, this);
    CloseAll(this);
  }
}

// Runs when the environment ends (process exit, worker exit): frees every object still open.
void Addon::CloseAll(void* arg) {
  auto* addon = static_cast<Addon*>(arg);
  addon->cleanup_hook_pending_ = false;
  std::vector<std::weak_ptr<ObjectState>> objects;
  objects.swap(addon->objects_);
  for (const auto& weak : objects) {
    if (auto state = weak.lock()) state->Close();
  }
}

void Addon::Track(const std::shared_ptr<ObjectState>& state) {
  // Forget objects that are gone, so that a long-lived process opening many objects does not grow this list.
  objects_.erase(std::remove_if(objects_.begin(), objects_.end(),
                                [](const auto& weak) {
                                  auto live = weak.lock();
                                  return !live || live->closed();
                                }),
                 objects_.end());
  objects_.push_back(state);
}

Napi::Value Addon::SetErrorClass(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsFunction()) {
    ThrowBpfError(info.Env(), "addon", EINVAL, "setErrorClass", "the argument must be a class");
  }
  error_class = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

namespace {

// Whether the user chose glibc's malloc thresholds (environment or tunables): then glibc's dynamic threshold is
// already off, libbpf cannot raise it, and the choice is theirs.
bool MallocConfiguredByUser() {
  for (const char* name : {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_"}) {
    if (getenv(name) != nullptr) return true;
  }
  const char* tunables = getenv("GLIBC_TUNABLES");
  if (tunables == nullptr) return false;
  for (const char* name : {"glibc.malloc.mmap_threshold", "glibc.malloc.trim_threshold", "glibc.malloc.top_pad",
                           "glibc.malloc.mmap_max"}) {
    if (strstr(tunables, name) != nullptr) return true;
  }
  return false;
}

}  // namespace

// Every object load has libbpf read and parse the kernel's BTF (/sys/kernel/btf/vmlinux, 5.5 MB here) into buffers
// of that size, which glibc serves with mmap. Freeing such a chunk makes glibc's dynamic threshold jump: mmap only
// above 5.5 MB from then on, and a heap's free top returned only beyond twice that (M_TRIM_THRESHOLD 11 MB). The
// threshold is process-wide, and each thread has its own arena: V8's compiler threads then keep up to 11 MB of freed
// zone memory each, which malloc_trim() does not return (it never trims a thread arena's top). Measured with
// bench/memory.js: +6.2 MB resident in thread arenas after load, +0.5 MB with the thresholds fixed. So, before
// libbpf's first parse, the thresholds are fixed at glibc's defaults (128 KiB each); this ends glibc's dynamic
// adjustment for the process (as MALLOC_TRIM_THRESHOLD_ would), unless the user configured malloc already.
void FixMallocThresholds() {
#ifdef __GLIBC__
  static std::once_flag once;
  std::call_once(once, [] {
    if (MallocConfiguredByUser()) return;
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    mallopt(M_TRIM_THRESHOLD, 128 * 1024);
  });
#endif
}

// open(path, options?): options.btfCustomPath is libbpf's btf_custom_path (the BTF that CO-RE relocates against).
Napi::Value Addon::Open(const Napi::CallbackInfo& info) {
  FixMallocThresholds();
  std::string btf;
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Value v = info[1].As<Napi::Object>().Get("btfCustomPath");
    if (v.IsString()) btf = v.As<Napi::String>().Utf8Value();
  }
  return OpenObject(info.Env(), StringArg(info, 0, "open", "path"), btf);
}

Napi::Value Addon::EnableStats(const Napi::CallbackInfo& info) {
  int fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (fd < 0) ThrowBpfError(info.Env(), "stats", -fd, "enable BPF_STATS_RUN_TIME");
  return NewStatsHandle(info.Env(), fd);
}

// Returns the free pages inside the heap after the objects are loaded. With the thresholds fixed (above) free()
// already gives back the top of each heap, and this adds nothing measurable here (bench/memory.js: main arena 4.0 MB
// with or without); it still matters when the user's own malloc settings let libbpf's freed BTF stay in the heap.
void Addon::TrimMemory(const Napi::CallbackInfo&) {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

Napi::Value Addon::LibbpfVersion(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(),
                           std::to_string(libbpf_major_version()) + "." + std::to_string(libbpf_minor_version()));
}

// loopBackendFd(): the epoll fd of the calling thread's event loop (uv_backend_fd), or -1.
Napi::Value Addon::LoopBackendFd(const Napi::CallbackInfo& info) {
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(info.Env(), &loop) != napi_ok || loop == nullptr) return Napi::Number::New(info.Env(), -1);
  return Napi::Number::New(info.Env(), uv_backend_fd(loop));
}

Napi::Value Addon::ProbeProgramType(const Napi::CallbackInfo& info) {
  std::string name = StringArg(info, 0, "config", "program type");
  // Every type libbpf has a name for; libbpf_bpf_prog_type_str returns NULL past the last one.
  for (int type = 0;; type++) {
    const char* type_name = libbpf_bpf_prog_type_str(static_cast<bpf_prog_type>(type));
    if (type_name == nullptr) break;
    if (name != type_name) continue;
    int supported = libbpf_probe_bpf_prog_type(static_cast<bpf_prog_type>(type), nullptr);
    if (supported < 0) ThrowBpfError(info.Env(), "load", -supported, "probe program type " + name);
    return Napi::Boolean::New(info.Env(), supported == 1);
  }
  ThrowBpfError(info.Env(), "config", EINVAL, "probe program type " + name, "libbpf has no program type by that name");
}

// Calls the no-op below `iterations` times through a volatile pointer (so that every call happens) and returns the
// elapsed nanoseconds (CLOCK_MONOTONIC). With a uprobe on otel_node_ebpf_calibrate, the difference per call is the
// cost of one uprobe hit on this machine (src/budget.ts).
Napi::Value Addon::Calibrate(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber()) {
    ThrowBpfError(info.Env(), "addon", EINVAL, "calibrate", "the argument must be a number of iterations");
  }
  int64_t iterations = info[0].As<Napi::Number>().Int64Value();
  bool stepped = info.Length() > 1 && info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
  void (*volatile fn)(void) = stepped ? otel_node_ebpf_calibrate_stepped : otel_node_ebpf_calibrate;
  timespec start{}, end{};
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (int64_t i = 0; i < iterations; i++) fn();
  clock_gettime(CLOCK_MONOTONIC, &end);
  int64_t ns = (end.tv_sec - start.tv_sec) * 1000000000LL + (end.tv_nsec - start.tv_nsec);
  return Napi::Number::New(info.Env(), static_cast<double>(ns));
}

}  // namespace otel_ebpf

// Two functions that do nothing, exported from the .node's dynamic symbol table so that a uprobe can attach to them
// by name: the SDK measures the cost of a uprobe hit on them at start. The cost of a hit depends on the function's
// first instruction: x86-64 kernels emulate push, call and jumps at the breakpoint, and single-step anything else out
// of line (a second trap). otel_node_ebpf_calibrate starts like most functions (push %rbp);
// otel_node_ebpf_calibrate_stepped starts with an instruction that must be stepped (as ossl_statem_connect does).
#if defined(__x86_64__)
__asm__(
    ".text\n"
    ".globl otel_node_ebpf_calibrate\n"
    ".type otel_node_ebpf_calibrate, @function\n"
    "otel_node_ebpf_calibrate:\n"
    "  push %rbp\n"
    "  mov %rsp, %rbp\n"
    "  pop %rbp\n"
    "  ret\n"
    ".size otel_node_ebpf_calibrate, .-otel_node_ebpf_calibrate\n"
    ".globl otel_node_ebpf_calibrate_stepped\n"
    ".type otel_node_ebpf_calibrate_stepped, @function\n"
    "otel_node_ebpf_calibrate_stepped:\n"
    "  xor %eax, %eax\n"
    "  ret\n"
    ".size otel_node_ebpf_calibrate_stepped, .-otel_node_ebpf_calibrate_stepped\n");
#else
extern "C" __attribute__((visibility("default"), noinline, used)) void otel_node_ebpf_calibrate(void) {
  __asm__ __volatile__("" ::: "memory");
}
extern "C" __attribute__((visibility("default"), noinline, used)) void otel_node_ebpf_calibrate_stepped(void) {
  __asm__ __volatile__("" ::: "memory");
}
#endif

using otel_ebpf::Addon;
NODE_API_ADDON(Addon)
