// NativeRingBuffer: a BPF ring buffer map read from the libuv loop. libbpf's ring_buffer has an epoll fd that is
// readable when records are pending; a uv_poll_t watches it, so there is no thread and the loop never blocks. The
// poll handle is unref'd: it never keeps the process alive.
//
// Lifetime of the uv_poll_t: it is closed asynchronously (uv_close), so it lives in its own allocation (PollHandle)
// freed by the close callback, not in RingState. Each PollHandle registers an async environment cleanup hook, which
// makes Node run the loop at environment teardown (worker exit, process exit) until the close callback has run.
#include <bpf/libbpf.h>

#include <cerrno>
#include <memory>

#include "addon.h"

namespace otel_ebpf {

struct PollHandle {
  uv_poll_t handle;
  RingState* ring = nullptr;  // null once the ring is closed
  napi_async_cleanup_hook_handle hook = nullptr;
};

struct RingState : std::enable_shared_from_this<RingState> {
  napi_env env = nullptr;
  ring_buffer* rb = nullptr;
  PollHandle* poll = nullptr;
  Napi::FunctionReference on_records;
  std::unique_ptr<Napi::AsyncContext> async_context;  // for MakeCallback from the poll callback
  std::string subject;                               // "native_fixture.bpf.o ring buffer events"
  std::vector<std::string> batch;                    // records of the current consume, copied
  int poll_error = 0;                                // first poll failure; polling stops there

  RingState() = default;
  RingState(const RingState&) = delete;
  RingState& operator=(const RingState&) = delete;
  ~RingState() { CloseRing(this); }
};

namespace {

int OnSample(void* ctx, void* data, size_t size) {
  static_cast<RingState*>(ctx)->batch.emplace_back(static_cast<const char*>(data), size);
  return 0;
}

void OnPollClosed(uv_handle_t* handle) {
  auto* poll = static_cast<PollHandle*>(handle->data);
  napi_async_cleanup_hook_handle hook = poll->hook;
  delete poll;
  // Last: at environment teardown this may release the environment itself.
  if (hook != nullptr) napi_remove_async_cleanup_hook(hook);
}

void StopPolling(RingState* ring) {
  if (ring->poll == nullptr) return;
  PollHandle* poll = ring->poll;
  ring->poll = nullptr;
  poll->ring = nullptr;
  uv_poll_stop(&poll->handle);
  uv_close(reinterpret_cast<uv_handle_t*>(&poll->handle), OnPollClosed);
}

// Environment teardown: close the ring; OnPollClosed then tells Node that this hook is done.
void OnEnvironmentCleanup(napi_async_cleanup_hook_handle, void* arg) {
  auto* poll = static_cast<PollHandle*>(arg);
  if (poll->ring != nullptr) CloseRing(poll->ring);
}

// Hands the batch to JavaScript as one array of Buffers, for consume(): a JS exception simply propagates to the
// caller. (libuv's poll callback uses DeliverFromLoop.)
void Deliver(RingState* ring) {
  if (ring->batch.empty() || ring->on_records.IsEmpty()) {
    ring->batch.clear();
    return;
  }
  Napi::Env env(ring->env);
  Napi::HandleScope scope(env);
  std::vector<std::string> records;
  records.swap(ring->batch);
  Napi::Array array = Napi::Array::New(env, records.size());
  for (uint32_t i = 0; i < records.size(); i++) {
    array.Set(i, Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(records[i].data()),
                                             records[i].size()));
  }
  ring->on_records.Value().Call({array});
}

// Deliver() for libuv's poll callback, in plain N-API. While a worker thread is being terminated (from another
// thread, at any moment), calls into JavaScript start failing with napi_pending_exception or napi_cannot_run_js
// without any exception to report; node-addon-api would turn that into a fatal error. Here such a batch is dropped,
// quietly: the environment is going away and its cleanup hook closes the ring. An exception thrown by the callback
// itself is an uncaught exception, as for any callback from the event loop.
void DeliverFromLoop(RingState* ring) {
  std::vector<std::string> records;
  records.swap(ring->batch);
  if (records.empty() || ring->on_records.IsEmpty()) return;
  napi_env env = ring->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value array, callback, global, result;
  bool ok = napi_create_array_with_length(env, records.size(), &array) == napi_ok;
  for (uint32_t i = 0; ok && i < records.size(); i++) {
    napi_value buffer;
    ok = napi_create_buffer_copy(env, records[i].size(), records[i].data(), nullptr, &buffer) == napi_ok &&
         napi_set_element(env, array, i, buffer) == napi_ok;
  }
  ok = ok && napi_get_reference_value(env, ring->on_records, &callback) == napi_ok &&
       napi_get_global(env, &global) == napi_ok;
  if (ok && napi_make_callback(env, *ring->async_context, global, callback, 1, &array, &result) != napi_ok) {
    bool pending = false;
    napi_value exception;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending &&
        napi_get_and_clear_last_exception(env, &exception) == napi_ok)
      napi_fatal_exception(env, exception);
  }
  napi_close_handle_scope(env, scope);
}

void OnReadable(uv_poll_t* handle, int status, int) {
  auto* poll = static_cast<PollHandle*>(handle->data);
  if (poll->ring == nullptr) return;
  std::shared_ptr<RingState> ring = poll->ring->shared_from_this();  // the callback may close it
  int consumed = status < 0 ? status : ring_buffer__consume(ring->rb);
  if (consumed < 0) {
    // Keep the error for consume() to throw; there is no JavaScript caller to throw it to here.
    ring->poll_error = -consumed;
    StopPolling(ring.get());
  }
  DeliverFromLoop(ring.get());
}

class JsRingBuffer : public ChildWrap<JsRingBuffer> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeRingBuffer",
                       {
                           InstanceMethod<&JsRingBuffer::Consume>("consume"),
                           InstanceMethod<&JsRingBuffer::Close>("close"),
                       });
  }
  using ChildWrap::ChildWrap;
  // Collected: the ring buffer keeps delivering; it belongs to its object, which frees it on close.

  void Init(Napi::Object owner, std::shared_ptr<ObjectState> state, std::shared_ptr<RingState> ring) {
    Adopt(owner, std::move(state));
    ring_ = std::move(ring);
  }

 private:
  Napi::Value Consume(const Napi::CallbackInfo& info) {
    if (!ring_ || ring_->rb == nullptr) ThrowBpfError(Env(), "ringbuf", EBADF, ring_ ? ring_->subject : "", "closed");
    std::shared_ptr<RingState> ring = ring_;
    if (ring->poll_error != 0) ThrowBpfError(Env(), "poll", ring->poll_error, ring->subject);
    int consumed = ring_buffer__consume(ring->rb);
    if (consumed < 0) {
      ring->batch.clear();
      ThrowBpfError(Env(), "poll", -consumed, ring->subject);
    }
    Deliver(ring.get());
    return Napi::Number::New(info.Env(), consumed);
  }

  void Close(const Napi::CallbackInfo&) {
    if (!ring_) return;
    CloseRing(ring_.get());
    state_->ForgetRing(ring_.get());
  }

  std::shared_ptr<RingState> ring_;
};

}  // namespace

void CloseRing(RingState* ring) {
  StopPolling(ring);  // before the fd goes away with the ring buffer
  if (ring->rb != nullptr) {
    ring_buffer__free(ring->rb);
    ring->rb = nullptr;
  }
  ring->batch.clear();
  ring->on_records.Reset();
  ring->async_context.reset();
}

Napi::Function DefineRingClass(Napi::Env env) { return JsRingBuffer::Define(env); }

Napi::Object NewRingBuffer(Napi::Env env, Napi::Object owner, std::shared_ptr<ObjectState> state,
                           const std::string& map_name, bpf_map* map, Napi::Function on_records) {
  Addon& addon = Addon::Of(env);
  Napi::Object wrapper = addon.ring_class.New({ConstructToken(env)});
  auto ring = std::make_shared<RingState>();
  ring->env = env;
  ring->subject = state->name + " ring buffer " + map_name;
  ring->on_records = Napi::Persistent(on_records);
  ring->async_context = std::make_unique<Napi::AsyncContext>(env, "otel-node-ebpf:ringbuf");

  LogCapture capture;
  ring->rb = ring_buffer__new(bpf_map__fd(map), OnSample, ring.get(), nullptr);
  if (ring->rb == nullptr) {
    int err = errno;
    ThrowBpfError(env, "ringbuf", err, ring->subject, "", capture.Tail());
  }
  auto* poll = new PollHandle();
  poll->handle.data = poll;
  int err = uv_poll_init(addon.loop, &poll->handle, ring_buffer__epoll_fd(ring->rb));
  if (err < 0) {
    delete poll;  // never initialised: nothing to close
    ThrowBpfError(env, "poll", -err, ring->subject, uv_strerror(err));
  }
  poll->ring = ring.get();
  ring->poll = poll;
  uv_unref(reinterpret_cast<uv_handle_t*>(&poll->handle));
  napi_status status = napi_add_async_cleanup_hook(env, OnEnvironmentCleanup, poll, &poll->hook);
  if (status != napi_ok) ThrowBpfError(env, "poll", EINVAL, ring->subject, "cannot add an environment cleanup hook");
  err = uv_poll_start(&poll->handle, UV_READABLE, OnReadable);
  if (err < 0) ThrowBpfError(env, "poll", -err, ring->subject, uv_strerror(err));

  state->rings.push_back(ring);
  JsRingBuffer::Unwrap(wrapper)->Init(owner, std::move(state), std::move(ring));
  return wrapper;
}

}  // namespace otel_ebpf
