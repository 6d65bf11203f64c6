// NativeObject (one bpf_object: open, configure, load, attach) and NativeLink (one bpf_link).
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <thread>
#include <vector>

#include "addon.h"

namespace otel_ebpf {

// ---- state ------------------------------------------------------------------------------------------------------

int LinkState::Destroy() {
  if (fd >= 0) {
    int err = close(fd) == 0 ? 0 : -errno;
    fd = -1;
    return err;
  }
  if (link == nullptr) return 0;
  int err = bpf_link__destroy(link);
  link = nullptr;
  return err;
}

void ObjectState::Close() {
  if (obj == nullptr) return;
  // Ring buffers first: their poll handles watch fds of this object's maps.
  for (const auto& ring : rings) CloseRing(ring.get());
  rings.clear();
  for (const auto& link : links) link->Destroy();
  links.clear();
  bpf_object__close(obj);
  obj = nullptr;
}

void ObjectState::CloseInBackground() {
  if (obj == nullptr) return;
  for (const auto& ring : rings) CloseRing(ring.get());  // uv handles: on the loop's thread
  rings.clear();
  // Take the links away from the states that JavaScript wrappers may still hold: their destroy() and close() become
  // no-ops, and nothing but the thread below touches these links again.
  std::vector<std::shared_ptr<LinkState>> detached;
  for (const auto& link : links) {
    if (link->link == nullptr && link->fd < 0) continue;  // destroyed already
    auto moved = std::make_shared<LinkState>();
    std::swap(moved->link, link->link);
    std::swap(moved->fd, link->fd);
    detached.push_back(std::move(moved));
  }
  links.clear();
  bpf_object* object = obj;
  obj = nullptr;
  auto teardown = [detached, object]() {
    // One thread per link. Each uprobe link waits for RCU grace periods as it is destroyed: those of uprobe_multi
    // links overlap (eight: 68 ms, against 408 ms one after the other); those of uprobes made through perf events
    // only in part, as the kernel tears them down under one mutex (eight: 728 ms, against 864-900 ms).
    std::vector<std::thread> threads;
    for (const auto& link : detached) {
      try {
        threads.emplace_back([link] { link->Destroy(); });
      } catch (const std::system_error&) {
        link->Destroy();
      }
    }
    for (std::thread& t : threads) t.join();
    bpf_object__close(object);
  };
  try {
    std::thread(teardown).detach();
  } catch (const std::system_error&) {
    teardown();  // no thread to be had: detach here, as close() does
  }
}

bpf_map* ObjectState::FindMap(const std::string& map_name) const {
  return obj == nullptr ? nullptr : bpf_object__find_map_by_name(obj, map_name.c_str());
}

bpf_program* ObjectState::FindProgram(const std::string& program_name) const {
  return obj == nullptr ? nullptr : bpf_object__find_program_by_name(obj, program_name.c_str());
}

void ObjectState::ForgetLink(const LinkState* link) {
  links.erase(std::remove_if(links.begin(), links.end(), [link](const auto& l) { return l.get() == link; }),
              links.end());
}

void ObjectState::ForgetRing(const RingState* ring) {
  rings.erase(std::remove_if(rings.begin(), rings.end(), [ring](const auto& r) { return r.get() == ring; }),
              rings.end());
}

std::string DescribeProgram(const bpf_program* prog) {
  return std::string(bpf_program__section_name(prog)) + " (" + bpf_program__name(prog) + ")";
}

namespace {

// The name in the first "<kind> '<name>': <what>" of libbpf's messages, or "".
std::string NameBefore(const std::string& log, const std::string& kind, const std::string& what) {
  std::string marker = "': " + what;
  for (size_t end = log.find(marker); end != std::string::npos; end = log.find(marker, end + 1)) {
    size_t start = log.rfind(kind + " '", end);
    if (start == std::string::npos) continue;
    start += kind.size() + 2;
    if (log.find_first_of("'\n", start) == end) return log.substr(start, end - start);
  }
  return "";
}

// A failed bpf_object__load names the culprit only in libbpf's messages ("prog 'x': BPF program load failed: ...",
// "map 'y': failed to create: ..."); find it there.
std::string LoadCulprit(const std::string& log) {
  std::string name = NameBefore(log, "prog", "BPF program load failed");
  if (!name.empty()) return "program " + name;
  name = NameBefore(log, "map", "failed to create");
  return name.empty() ? "" : "map " + name;
}

struct GlobalVar {
  std::string section;  // ".rodata", ".data" or ".bss"
  size_t offset = 0;
  size_t size = 0;
};

// Finds a global variable in the object's BTF data sections.
bool FindGlobal(bpf_object* obj, const std::string& var_name, GlobalVar* out) {
  const btf* object_btf = bpf_object__btf(obj);
  if (object_btf == nullptr) return false;
  for (const char* section : {".rodata", ".data", ".bss"}) {
    int id = btf__find_by_name_kind(object_btf, section, BTF_KIND_DATASEC);
    if (id < 0) continue;
    const btf_type* datasec = btf__type_by_id(object_btf, id);
    const btf_var_secinfo* vars = btf_var_secinfos(datasec);
    for (int i = 0; i < btf_vlen(datasec); i++) {
      const btf_type* var = btf__type_by_id(object_btf, vars[i].type);
      if (var == nullptr || !btf_is_var(var)) continue;
      if (var_name == btf__name_by_offset(object_btf, var->name_off)) {
        *out = {section, vars[i].offset, vars[i].size};
        return true;
      }
    }
  }
  return false;
}

bool EndsWith(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// BPF_LINK_CREATE's uprobe_multi attributes (include/uapi/linux/bpf.h since 6.6; not in this libbpf's headers):
// link_create's four u32, then its union at offset 16.
struct UprobeMultiLinkCreate {
  uint32_t prog_fd;
  uint32_t target_fd;
  uint32_t attach_type;
  uint32_t flags;
  uint64_t path;
  uint64_t offsets;
  uint64_t ref_ctr_offsets;
  uint64_t cookies;
  uint32_t cnt;
  uint32_t uprobe_flags;
  uint32_t pid;
};
constexpr uint32_t kTraceUprobeMulti = 48;   // BPF_TRACE_UPROBE_MULTI in enum bpf_attach_type
constexpr uint32_t kUprobeMultiReturn = 1;   // BPF_F_UPROBE_MULTI_RETURN

// ---- NativeObject -------------------------------------------------------------------------------------------

class JsObject : public Napi::ObjectWrap<JsObject> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeObject",
                       {
                           InstanceAccessor<&JsObject::Path>("path"),
                           InstanceMethod<&JsObject::Programs>("programs"),
                           InstanceMethod<&JsObject::Maps>("maps"),
                           InstanceMethod<&JsObject::SetGlobal>("setGlobal"),
                           InstanceMethod<&JsObject::SetMaxEntries>("setMaxEntries"),
                           InstanceMethod<&JsObject::SetAutoload>("setAutoload"),
                           InstanceMethod<&JsObject::SetUprobeMulti>("setUprobeMulti"),
                           InstanceMethod<&JsObject::ReuseMapsFrom>("reuseMapsFrom"),
                           InstanceMethod<&JsObject::Load>("load"),
                           InstanceMethod<&JsObject::Attach>("attach"),
                           InstanceMethod<&JsObject::AttachUprobe>("attachUprobe"),
                           InstanceMethod<&JsObject::Map>("map"),
                           InstanceMethod<&JsObject::ProgramStats>("programStats"),
                           InstanceMethod<&JsObject::RingBuffer>("ringBuffer"),
                           InstanceMethod<&JsObject::Close>("close"),
                           InstanceMethod<&JsObject::CloseInBackground>("closeInBackground"),
                       });
  }

  explicit JsObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<JsObject>(info) {
    CheckConstructToken(info);
  }
  JsObject(const JsObject&) = delete;
  JsObject& operator=(const JsObject&) = delete;
  // Collected without close(): free everything now (children keep this wrapper alive while they live).
  ~JsObject() override { state_->Close(); }

  std::shared_ptr<ObjectState>& state() { return state_; }

 private:
  // The open object, or a BpfError(step, EBADF).
  ObjectState& Live(const char* step) {
    if (state_->closed()) ThrowBpfError(Env(), step, EBADF, state_->name, "the object is closed");
    return *state_;
  }
  // Configuration happens between open and load.
  ObjectState& Configurable() {
    ObjectState& state = Live("config");
    if (state.load_attempted) {
      ThrowBpfError(Env(), "config", EBUSY, state.name, "the object is already loaded; configure it before load()");
    }
    return state;
  }
  ObjectState& Loaded(const char* step) {
    ObjectState& state = Live(step);
    if (!state.loaded) ThrowBpfError(Env(), step, EINVAL, state.name, "the object is not loaded; call load() first");
    return state;
  }
  bpf_program* Program(ObjectState& state, const std::string& name, const char* step) {
    bpf_program* prog = state.FindProgram(name);
    if (prog == nullptr) ThrowBpfError(Env(), step, ENOENT, state.name, "no program named '" + name + "'");
    return prog;
  }
  bpf_map* MapNamed(ObjectState& state, const std::string& name, const char* step) {
    bpf_map* map = state.FindMap(name);
    if (map == nullptr) ThrowBpfError(Env(), step, ENOENT, state.name, "no map named '" + name + "'");
    return map;
  }

  Napi::Value Path(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), state_->path); }

  Napi::Value Programs(const Napi::CallbackInfo& info) {
    ObjectState& state = Live("open");
    Napi::Array result = Napi::Array::New(info.Env());
    bpf_program* prog;
    uint32_t i = 0;
    bpf_object__for_each_program(prog, state.obj) {
      Napi::Object entry = Napi::Object::New(info.Env());
      entry.Set("name", bpf_program__name(prog));
      entry.Set("section", bpf_program__section_name(prog));
      const char* type = libbpf_bpf_prog_type_str(bpf_program__type(prog));
      entry.Set("type", type != nullptr ? type : "unknown");
      result.Set(i++, entry);
    }
    return result;
  }

  Napi::Value Maps(const Napi::CallbackInfo& info) {
    ObjectState& state = Live("open");
    Napi::Array result = Napi::Array::New(info.Env());
    uint32_t i = 0;
    bpf_map* map;
    bpf_object__for_each_map(map, state.obj) {
      Napi::Object entry = Napi::Object::New(info.Env());
      entry.Set("name", bpf_map__name(map));
      const char* type = libbpf_bpf_map_type_str(bpf_map__type(map));
      entry.Set("type", type != nullptr ? type : "unknown");
      entry.Set("keySize", bpf_map__key_size(map));
      entry.Set("valueSize", bpf_map__value_size(map));
      entry.Set("maxEntries", bpf_map__max_entries(map));
      result.Set(i++, entry);
    }
    return result;
  }

  void SetGlobal(const Napi::CallbackInfo& info) {
    std::string name = StringArg(info, 0, "config", "global name");
    Napi::Buffer<uint8_t> value = BufferArg(info, 1, "config", "value");
    ObjectState& state = Configurable();
    std::string subject = state.name + " global " + name;
    GlobalVar var;
    if (!FindGlobal(state.obj, name, &var)) {
      ThrowBpfError(Env(), "config", ENOENT, subject, "no such variable in .rodata, .data or .bss");
    }
    if (value.Length() != var.size) {
      ThrowBpfError(Env(), "config", EINVAL, subject,
                    "the variable has " + std::to_string(var.size) + " bytes, the value " +
                        std::to_string(value.Length()));
    }
    bpf_map* map;
    bpf_object__for_each_map(map, state.obj) {
      if (!bpf_map__is_internal(map) || !EndsWith(bpf_map__name(map), var.section)) continue;
      size_t size = 0;
      // libbpf 1.1 returns the initial image as const; before load it is libbpf's own writable copy.
      auto* image = static_cast<uint8_t*>(const_cast<void*>(bpf_map__initial_value(map, &size)));
      if (image == nullptr || var.offset + var.size > size) break;
      std::memcpy(image + var.offset, value.Data(), var.size);
      return;
    }
    ThrowBpfError(Env(), "config", ENOENT, subject, "no " + var.section + " map holds it");
  }

  void SetMaxEntries(const Napi::CallbackInfo& info) {
    std::string name = StringArg(info, 0, "config", "map name");
    if (info.Length() < 2 || !info[1].IsNumber()) {
      ThrowBpfError(Env(), "config", EINVAL, "setMaxEntries", "entries must be a number");
    }
    int64_t entries = info[1].As<Napi::Number>().Int64Value();
    ObjectState& state = Configurable();
    if (entries < 0 || entries > UINT32_MAX) {
      ThrowBpfError(Env(), "config", EINVAL, state.name + " map " + name, "max entries out of range");
    }
    bpf_map* map = MapNamed(state, name, "config");
    int err = bpf_map__set_max_entries(map, static_cast<uint32_t>(entries));
    if (err < 0) ThrowBpfError(Env(), "config", -err, state.name + " map " + name);
  }

  // setUprobeMulti(program): the uprobe program will be loaded for uprobe_multi links (BPF_TRACE_UPROBE_MULTI, linux
  // 6.6), which attachUprobe then makes instead of a uprobe perf event. A kernel without them loads it all the same
  // and refuses the link (EINVAL): the caller loads another instance without this.
  void SetUprobeMulti(const Napi::CallbackInfo& info) {
    std::string name = StringArg(info, 0, "config", "program name");
    ObjectState& state = Configurable();
    bpf_program* prog = Program(state, name, "config");
    int err = bpf_program__set_expected_attach_type(prog, static_cast<bpf_attach_type>(kTraceUprobeMulti));
    if (err < 0) ThrowBpfError(Env(), "config", -err, state.name + " program " + name);
  }

  void SetAutoload(const Napi::CallbackInfo& info) {
    std::string name = StringArg(info, 0, "config", "program name");
    if (info.Length() < 2 || !info[1].IsBoolean()) {
      ThrowBpfError(Env(), "config", EINVAL, "setAutoload", "autoload must be a boolean");
    }
    ObjectState& state = Configurable();
    bpf_program* prog = Program(state, name, "config");
    int err = bpf_program__set_autoload(prog, info[1].As<Napi::Boolean>().Value());
    if (err < 0) ThrowBpfError(Env(), "config", -err, state.name + " program " + name);
  }

  void ReuseMapsFrom(const Napi::CallbackInfo& info) {
    Addon& addon = Addon::Of(Env());
    if (info.Length() < 1 || !info[0].IsObject() || !info[0].As<Napi::Object>().InstanceOf(addon.object_class.Value())) {
      ThrowBpfError(Env(), "config", EINVAL, "reuseMapsFrom", "the argument must be a NativeObject");
    }
    ObjectState& state = Configurable();
    ObjectState& other = *Unwrap(info[0].As<Napi::Object>())->state_;
    if (&other == &state) ThrowBpfError(Env(), "config", EINVAL, state.name, "an object cannot reuse its own maps");
    if (other.closed() || !other.loaded) {
      ThrowBpfError(Env(), "config", EINVAL, state.name, "reuseMapsFrom() needs a loaded, open object");
    }
    bpf_map* map;
    bpf_object__for_each_map(map, state.obj) {
      std::string name = bpf_map__name(map);
      bpf_map* source = other.FindMap(name);
      if (source == nullptr) continue;
      LogCapture capture;
      int err = bpf_map__reuse_fd(map, bpf_map__fd(source));
      if (err < 0) ThrowBpfError(Env(), "config", -err, state.name + " map " + name, "", capture.Tail());
    }
  }

  void Load(const Napi::CallbackInfo& info) {
    ObjectState& state = Live("load");
    if (state.load_attempted) ThrowBpfError(Env(), "load", EBUSY, state.name, "load() was already called");
    state.load_attempted = true;
    LogCapture capture;
    int err;
    {
      // The verifier gives up with EAGAIN whenever a signal is pending for the loading thread (kernel/bpf/verifier.c,
      // do_check: signal_pending). A sampling profiler in the application (node --cpu-prof, or an in-process
      // continuous profiler through V8's CPU profiler) sends this thread SIGPROF every 50 µs to 10 ms, more often
      // than a program of ours verifies, so libbpf's five attempts fail alike and the probe is lost. While the kernel
      // verifies, the asynchronous signals wait: they arrive when it is done (a late profiler sample), and signals
      // sent to the process go to one of its other threads meanwhile.
      SignalsBlocked deferred(SignalsBlocked::kAsynchronous);
      err = bpf_object__load(state.obj);
    }
    if (err < 0) {
      std::string log = capture.Tail();
      std::string culprit = LoadCulprit(log);
      ThrowBpfError(Env(), "load", -err, state.name + (culprit.empty() ? "" : ", " + culprit), "", log);
    }
    state.loaded = true;
  }

  Napi::Value Attach(const Napi::CallbackInfo& info) {
    std::string name = StringArg(info, 0, "attach", "program name");
    ObjectState& state = Loaded("attach");
    bpf_program* prog = Program(state, name, "attach");
    return AttachWith(DescribeProgram(prog), [prog] { return bpf_program__attach(prog); });
  }

  Napi::Value AttachUprobe(const Napi::CallbackInfo& info) {
    std::string name = StringArg(info, 0, "attach", "program name");
    if (info.Length() < 2 || !info[1].IsObject()) {
      ThrowBpfError(Env(), "attach", EINVAL, "attachUprobe", "options must be an object");
    }
    Napi::Object options = info[1].As<Napi::Object>();
    Napi::Value binary = options.Get("binary");
    Napi::Value symbol = options.Get("symbol");
    Napi::Value retprobe = options.Get("retprobe");
    Napi::Value pid = options.Get("pid");
    Napi::Value offset = options.Get("offset");
    if (!binary.IsString() || !symbol.IsString() || !(retprobe.IsUndefined() || retprobe.IsBoolean()) ||
        !(pid.IsUndefined() || pid.IsNumber()) || !(offset.IsUndefined() || offset.IsNumber())) {
      ThrowBpfError(Env(), "attach", EINVAL, "attachUprobe",
                    "options are { binary: string, symbol: string, retprobe?: boolean, pid?: number, offset?: number }");
    }
    std::string binary_path = binary.As<Napi::String>();
    std::string func_name = symbol.As<Napi::String>();
    bool is_return = retprobe.IsBoolean() && retprobe.As<Napi::Boolean>().Value();
    ObjectState& state = Loaded("attach");
    bpf_program* prog = Program(state, name, "attach");

    size_t func_offset = offset.IsNumber() ? static_cast<size_t>(offset.As<Napi::Number>().Int64Value()) : 0;
    int target_pid = pid.IsNumber() ? pid.As<Napi::Number>().Int32Value() : -1;
    std::string what = std::string(is_return ? "uretprobe " : "uprobe ") + binary_path + ":" + func_name + " (" +
                       bpf_program__name(prog) + ")";
    if (bpf_program__expected_attach_type(prog) == static_cast<bpf_attach_type>(kTraceUprobeMulti)) {
      if (!offset.IsNumber()) ThrowBpfError(Env(), "attach", EINVAL, what, "the symbol's offset is needed (setUprobeMulti)");
      return AttachUprobeMulti(prog, what, binary_path, func_offset, is_return, target_pid);
    }
    bpf_uprobe_opts opts;
    std::memset(&opts, 0, sizeof(opts));
    opts.sz = sizeof(opts);
    opts.retprobe = is_return;
    // With a file offset resolved by the caller, libbpf does not parse the ELF's symbol tables again (tens of ms
    // for a node binary, per attach); the symbol then only names the probe.
    opts.func_name = offset.IsNumber() ? nullptr : func_name.c_str();
    return AttachWith(what, [&] {
      return bpf_program__attach_uprobe_opts(prog, target_pid, binary_path.c_str(), func_offset, &opts);
    });
  }

  Napi::Value Map(const Napi::CallbackInfo& info) {
    std::string name = StringArg(info, 0, "map", "map name");
    ObjectState& state = Loaded("map");
    return NewMap(Env(), Value(), state_, name, MapNamed(state, name, "map"));
  }

  Napi::Value ProgramStats(const Napi::CallbackInfo& info) {
    std::string name = StringArg(info, 0, "stats", "program name");
    ObjectState& state = Loaded("stats");
    bpf_program* prog = Program(state, name, "stats");
    int fd = bpf_program__fd(prog);
    if (fd < 0) ThrowBpfError(Env(), "stats", EBADF, DescribeProgram(prog), "the program was not loaded (autoload off)");
    bpf_prog_info prog_info;
    std::memset(&prog_info, 0, sizeof(prog_info));
    uint32_t len = sizeof(prog_info);
    int err = bpf_obj_get_info_by_fd(fd, &prog_info, &len);
    if (err < 0) ThrowBpfError(Env(), "stats", -err, DescribeProgram(prog));
    Napi::Object stats = Napi::Object::New(info.Env());
    stats.Set("id", prog_info.id);
    stats.Set("runTimeNs", Napi::BigInt::New(info.Env(), static_cast<uint64_t>(prog_info.run_time_ns)));
    stats.Set("runCount", Napi::BigInt::New(info.Env(), static_cast<uint64_t>(prog_info.run_cnt)));
    stats.Set("recursionMisses", Napi::BigInt::New(info.Env(), static_cast<uint64_t>(prog_info.recursion_misses)));
    return stats;
  }

  Napi::Value RingBuffer(const Napi::CallbackInfo& info) {
    std::string name = StringArg(info, 0, "ringbuf", "map name");
    if (info.Length() < 2 || !info[1].IsFunction()) {
      ThrowBpfError(Env(), "ringbuf", EINVAL, "ringBuffer", "onRecords must be a function");
    }
    ObjectState& state = Loaded("ringbuf");
    bpf_map* map = MapNamed(state, name, "ringbuf");
    if (bpf_map__type(map) != BPF_MAP_TYPE_RINGBUF) {
      ThrowBpfError(Env(), "ringbuf", EINVAL, state.name + " map " + name, "not a ring buffer map");
    }
    return NewRingBuffer(Env(), Value(), state_, name, map, info[1].As<Napi::Function>());
  }

  void Close(const Napi::CallbackInfo&) { state_->Close(); }
  void CloseInBackground(const Napi::CallbackInfo&) { state_->CloseInBackground(); }

  // A uprobe_multi link of one uprobe: made with BPF_LINK_CREATE directly, as this libbpf (1.1) predates them. What it
  // gives over a uprobe perf event: its teardown waits for RCU grace periods without the kernel's trace-event mutex,
  // so the object's links detach concurrently (CloseInBackground).
  Napi::Value AttachUprobeMulti(bpf_program* prog, const std::string& what, const std::string& binary, size_t offset,
                                bool is_return, int pid) {
    UprobeMultiLinkCreate create{};
    create.prog_fd = static_cast<uint32_t>(bpf_program__fd(prog));
    create.attach_type = kTraceUprobeMulti;
    uint64_t offsets[1] = {offset};
    create.path = reinterpret_cast<uintptr_t>(binary.c_str());
    create.offsets = reinterpret_cast<uintptr_t>(offsets);
    create.cnt = 1;
    create.uprobe_flags = is_return ? kUprobeMultiReturn : 0;
    create.pid = pid > 0 ? static_cast<uint32_t>(pid) : 0;
    bpf_attr attr;
    static_assert(sizeof(create) <= sizeof(attr), "bpf_attr holds link_create.uprobe_multi");
    std::memset(&attr, 0, sizeof(attr));  // the kernel wants every byte past the command's fields zero
    std::memcpy(&attr, &create, sizeof(create));
    int fd = static_cast<int>(syscall(__NR_bpf, BPF_LINK_CREATE, &attr, sizeof(attr)));
    if (fd < 0) ThrowBpfError(Env(), "attach", errno, what, "uprobe_multi link");
    auto link = std::make_shared<LinkState>();
    link->what = what;
    link->fd = fd;
    return Adopt(link);
  }

  // Runs a libbpf attach function; the link is adopted (Adopt).
  template <typename AttachFn>
  Napi::Value AttachWith(const std::string& what, AttachFn attach) {
    auto link = std::make_shared<LinkState>();
    link->what = what;
    LogCapture capture;
    link->link = attach();
    if (link->link == nullptr) {
      int err = errno;
      ThrowBpfError(Env(), "attach", err, what, "", capture.Tail());
    }
    return Adopt(link);
  }

  // Registers an attached link with the object (which detaches it on close) and wraps it.
  Napi::Value Adopt(const std::shared_ptr<LinkState>& link) {
    state_->links.push_back(link);
    return NewLink(Env(), Value(), state_, link);
  }

  std::shared_ptr<ObjectState> state_ = std::make_shared<ObjectState>();
};

// ---- NativeLink ---------------------------------------------------------------------------------------------

class JsLink : public ChildWrap<JsLink> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeLink", {InstanceMethod<&JsLink::Destroy>("destroy")});
  }
  using ChildWrap::ChildWrap;
  // Collected: the link stays attached; it belongs to its object, which detaches it on close.

  void Init(Napi::Object owner, std::shared_ptr<ObjectState> state, std::shared_ptr<LinkState> link) {
    Adopt(owner, std::move(state));
    link_ = std::move(link);
  }

 private:
  void Destroy(const Napi::CallbackInfo&) {
    if (!link_) return;
    int err = link_->Destroy();
    if (state_) state_->ForgetLink(link_.get());
    if (err < 0) ThrowBpfError(Env(), "detach", -err, link_->what);
  }

  std::shared_ptr<LinkState> link_;
};

}  // namespace

Napi::Function DefineObjectClass(Napi::Env env) { return JsObject::Define(env); }
Napi::Function DefineLinkClass(Napi::Env env) { return JsLink::Define(env); }

Napi::Object NewLink(Napi::Env env, Napi::Object owner, std::shared_ptr<ObjectState> state,
                     std::shared_ptr<LinkState> link) {
  Napi::Object wrapper = Addon::Of(env).link_class.New({ConstructToken(env)});
  JsLink::Unwrap(wrapper)->Init(owner, std::move(state), std::move(link));
  return wrapper;
}

Napi::Value OpenObject(Napi::Env env, const std::string& path, const std::string& btf_custom_path) {
  // The wrapper first: once libbpf has opened the file, nothing may throw before the state owns it.
  Napi::Object wrapper = Addon::Of(env).object_class.New({ConstructToken(env)});
  std::shared_ptr<ObjectState>& state = JsObject::Unwrap(wrapper)->state();
  LogCapture capture;
  LIBBPF_OPTS(bpf_object_open_opts, opts, .btf_custom_path = btf_custom_path.empty() ? nullptr : btf_custom_path.c_str());
  bpf_object* obj = bpf_object__open_file(path.c_str(), &opts);
  if (obj == nullptr) {
    int err = errno;
    ThrowBpfError(env, "open", err, path, "", capture.Tail());
  }
  state->obj = obj;
  state->path = path;
  state->name = path.substr(path.find_last_of('/') + 1);
  Addon::Of(env).Track(state);
  return wrapper;
}

}  // namespace otel_ebpf
