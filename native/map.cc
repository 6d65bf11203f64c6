// NativeMap: reads and writes one map of a loaded object through its fd. Keys and values are Buffers, copied.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "addon.h"

namespace otel_ebpf {

namespace {

bool IsPerCpu(bpf_map_type type) {
  return type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_ARRAY ||
         type == BPF_MAP_TYPE_LRU_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

class JsMap : public ChildWrap<JsMap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeMap",
                       {
                           InstanceAccessor<&JsMap::Name>("name"),
                           InstanceAccessor<&JsMap::Fd>("fd"),
                           InstanceAccessor<&JsMap::KeySize>("keySize"),
                           InstanceAccessor<&JsMap::ValueSize>("valueSize"),
                           InstanceMethod<&JsMap::Lookup>("lookup"),
                           InstanceMethod<&JsMap::Update>("update"),
                           InstanceMethod<&JsMap::Delete>("delete"),
                           InstanceMethod<&JsMap::Keys>("keys"),
                           InstanceMethod<&JsMap::Entries>("entries"),
                           InstanceMethod<&JsMap::Memory>("memory"),
                       });
  }

  using ChildWrap::ChildWrap;

  void Init(Napi::Object owner, std::shared_ptr<ObjectState> state, const std::string& name, bpf_map* map) {
    Adopt(owner, std::move(state));
    name_ = name;
    // The object is loaded: these no longer change, and stay readable after close.
    fd_ = bpf_map__fd(map);
    key_size_ = bpf_map__key_size(map);
    value_size_ = bpf_map__value_size(map);
    max_entries_ = bpf_map__max_entries(map);
    mmapable_ = bpf_map__type(map) == BPF_MAP_TYPE_ARRAY && (bpf_map__map_flags(map) & BPF_F_MMAPABLE) != 0;
    value_buffer_size_ = value_size_;
    if (IsPerCpu(bpf_map__type(map))) {
      int cpus = libbpf_num_possible_cpus();
      if (cpus < 0) ThrowBpfError(Env(), "map", -cpus, name_, "cannot count the possible CPUs");
      value_buffer_size_ = ((value_size_ + 7) / 8) * 8 * static_cast<size_t>(cpus);
    }
  }

 private:
  // The map's fd, or a BpfError(map, EBADF) once its object is closed.
  int LiveFd() {
    if (ObjectClosed()) ThrowBpfError(Env(), "map", EBADF, name_, "the object is closed");
    return fd_;
  }
  Napi::Buffer<uint8_t> KeyArg(const Napi::CallbackInfo& info, size_t index) {
    Napi::Buffer<uint8_t> key = BufferArg(info, index, "map", "key");
    if (key.Length() != key_size_) {
      ThrowBpfError(Env(), "map", EINVAL, name_,
                    "key has " + std::to_string(key.Length()) + " bytes, the map's keys " + std::to_string(key_size_));
    }
    return key;
  }
  // Looks a key up; false if absent.
  bool LookupInto(int fd, const void* key, std::string* value) {
    value->assign(value_buffer_size_, '\0');
    int err = bpf_map_lookup_elem(fd, key, &(*value)[0]);
    if (err == -ENOENT) return false;
    if (err < 0) ThrowBpfError(Env(), "map", -err, name_ + " lookup");
    return true;
  }
  Napi::Buffer<uint8_t> Copy(const std::string& bytes) {
    return Napi::Buffer<uint8_t>::Copy(Env(), reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  // All keys. Bounded by max_entries: a hash map whose current key is deleted meanwhile restarts from its first key.
  std::vector<std::string> AllKeys(int fd) {
    std::vector<std::string> keys;
    std::string next(key_size_, '\0');
    const void* previous = nullptr;
    while (keys.size() < max_entries_) {
      int err = bpf_map_get_next_key(fd, previous, &next[0]);
      if (err == -ENOENT) break;
      if (err < 0) ThrowBpfError(Env(), "map", -err, name_ + " get_next_key");
      keys.push_back(next);
      previous = keys.back().data();
    }
    return keys;
  }

  Napi::Value Name(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), name_); }
  Napi::Value Fd(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), ObjectClosed() ? -1 : fd_);
  }
  Napi::Value KeySize(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), key_size_); }
  Napi::Value ValueSize(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), value_size_); }

  Napi::Value Lookup(const Napi::CallbackInfo& info) {
    Napi::Buffer<uint8_t> key = KeyArg(info, 0);
    int fd = LiveFd();
    std::string value;
    if (!LookupInto(fd, key.Data(), &value)) return info.Env().Undefined();
    return Copy(value);
  }

  void Update(const Napi::CallbackInfo& info) {
    Napi::Buffer<uint8_t> key = KeyArg(info, 0);
    Napi::Buffer<uint8_t> value = BufferArg(info, 1, "map", "value");
    uint64_t flags = BPF_ANY;
    if (info.Length() > 2 && !info[2].IsUndefined()) {
      if (!info[2].IsNumber()) ThrowBpfError(Env(), "map", EINVAL, name_ + " update", "flags must be a number");
      flags = static_cast<uint64_t>(info[2].As<Napi::Number>().Int64Value());
    }
    if (value.Length() != value_buffer_size_) {
      ThrowBpfError(Env(), "map", EINVAL, name_ + " update",
                    "value has " + std::to_string(value.Length()) + " bytes, the map's values " +
                        std::to_string(value_buffer_size_));
    }
    int fd = LiveFd();
    int err = bpf_map_update_elem(fd, key.Data(), value.Data(), flags);
    if (err < 0) ThrowBpfError(Env(), "map", -err, name_ + " update");
  }

  Napi::Value Delete(const Napi::CallbackInfo& info) {
    Napi::Buffer<uint8_t> key = KeyArg(info, 0);
    int fd = LiveFd();
    int err = bpf_map_delete_elem(fd, key.Data());
    if (err == -ENOENT) return Napi::Boolean::New(info.Env(), false);
    if (err < 0) ThrowBpfError(Env(), "map", -err, name_ + " delete");
    return Napi::Boolean::New(info.Env(), true);
  }

  Napi::Value Keys(const Napi::CallbackInfo& info) {
    std::vector<std::string> keys = AllKeys(LiveFd());
    Napi::Array result = Napi::Array::New(info.Env(), keys.size());
    for (uint32_t i = 0; i < keys.size(); i++) result.Set(i, Copy(keys[i]));
    return result;
  }

  Napi::Value Entries(const Napi::CallbackInfo& info) {
    int fd = LiveFd();
    Napi::Array result = Napi::Array::New(info.Env());
    uint32_t count = 0;
    std::string value;
    for (const std::string& key : AllKeys(fd)) {
      if (!LookupInto(fd, key.data(), &value)) continue;  // deleted since keys were read
      Napi::Array pair = Napi::Array::New(info.Env(), 2);
      pair.Set(0u, Copy(key));
      pair.Set(1u, Copy(value));
      result.Set(count++, pair);
    }
    return result;
  }

  // memory(): the values of a BPF_F_MMAPABLE array, mapped into this process readable and writable (mmap of the map's
  // fd), as an ArrayBuffer of max_entries values, each value_size rounded up to 8 bytes (the kernel's array layout).
  // The mapping holds the kernel map: it stays valid after the object is closed, until the buffer is collected.
  Napi::Value Memory(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!mmapable_) ThrowBpfError(env, "map", EINVAL, name_ + " memory", "not an array map with BPF_F_MMAPABLE");
    int fd = LiveFd();
    size_t length = static_cast<size_t>(max_entries_) * ((value_size_ + 7) / 8 * 8);
    size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    size_t mapped = (length + page - 1) / page * page;
    void* data = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (data == MAP_FAILED) ThrowBpfError(env, "map", errno, name_ + " mmap");
    return Napi::ArrayBuffer::New(env, data, length, [mapped](Napi::Env, void* p) { munmap(p, mapped); });
  }

  std::string name_;
  bool mmapable_ = false;
  int fd_ = -1;
  uint32_t key_size_ = 0;
  uint32_t value_size_ = 0;
  uint32_t max_entries_ = 0;
  size_t value_buffer_size_ = 0;
};

}  // namespace

Napi::Function DefineMapClass(Napi::Env env) { return JsMap::Define(env); }

Napi::Object NewMap(Napi::Env env, Napi::Object owner, std::shared_ptr<ObjectState> state, const std::string& name,
                    bpf_map* map) {
  Napi::Object wrapper = Addon::Of(env).map_class.New({ConstructToken(env)});
  JsMap::Unwrap(wrapper)->Init(owner, std::move(state), name, map);
  return wrapper;
}

}  // namespace otel_ebpf
