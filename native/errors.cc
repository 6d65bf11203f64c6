// The addon's one exception policy: every failure is `new BpfError(message, step, errno, code, log?)`, with the
// class handed to setErrorClass(). libbpf's own messages never reach stderr: they are captured around the calls
// that can fail (open, load, attach) and surface only as BpfError.log.
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "addon.h"

namespace otel_ebpf {

namespace {

// The innermost capture of this thread. thread_local: worker threads load objects concurrently, and libbpf calls
// the print function on the thread that called into it.
thread_local LogCapture* current_capture = nullptr;

// Keep at most this much of libbpf's output while capturing; the tail is what explains a failure.
constexpr size_t kCaptureLimit = 1 << 20;
constexpr size_t kLogTail = 64 * 1024;

int LibbpfPrint(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG || current_capture == nullptr) return 0;
  char small[512];
  va_list copy;
  va_copy(copy, args);
  int len = vsnprintf(small, sizeof(small), format, copy);
  va_end(copy);
  if (len < 0) return 0;
  if (static_cast<size_t>(len) < sizeof(small)) {
    current_capture->Append(small, static_cast<size_t>(len));
  } else {
    std::string large(static_cast<size_t>(len) + 1, '\0');
    vsnprintf(&large[0], large.size(), format, args);
    current_capture->Append(large.data(), static_cast<size_t>(len));
  }
  return len;
}

struct ErrnoEntry {
  int value;
  const char* name;
};

// The errno values the bpf(2) syscall, perf_event_open(2), libbpf and file access return in practice.
constexpr ErrnoEntry kErrnoNames[] = {
    {EPERM, "EPERM"},
    {ENOENT, "ENOENT"},
    {ESRCH, "ESRCH"},
    {EINTR, "EINTR"},
    {EIO, "EIO"},
    {ENXIO, "ENXIO"},
    {E2BIG, "E2BIG"},
    {ENOEXEC, "ENOEXEC"},
    {EBADF, "EBADF"},
    {EAGAIN, "EAGAIN"},
    {ENOMEM, "ENOMEM"},
    {EACCES, "EACCES"},
    {EFAULT, "EFAULT"},
    {EBUSY, "EBUSY"},
    {EEXIST, "EEXIST"},
    {ENODEV, "ENODEV"},
    {ENOTDIR, "ENOTDIR"},
    {EISDIR, "EISDIR"},
    {EINVAL, "EINVAL"},
    {ENFILE, "ENFILE"},
    {EMFILE, "EMFILE"},
    {ENOTTY, "ENOTTY"},
    {EFBIG, "EFBIG"},
    {ENOSPC, "ENOSPC"},
    {ERANGE, "ERANGE"},
    {EDEADLK, "EDEADLK"},
    {ENAMETOOLONG, "ENAMETOOLONG"},
    {ENOSYS, "ENOSYS"},
    {ELOOP, "ELOOP"},
    {ENODATA, "ENODATA"},
    {ENOLINK, "ENOLINK"},
    {EPROTO, "EPROTO"},
    {EOVERFLOW, "EOVERFLOW"},
    {EBADMSG, "EBADMSG"},
    {EOPNOTSUPP, "EOPNOTSUPP"},
    {EAFNOSUPPORT, "EAFNOSUPPORT"},
    {EADDRINUSE, "EADDRINUSE"},
    {ETIMEDOUT, "ETIMEDOUT"},
    {ECONNREFUSED, "ECONNREFUSED"},
    {ECONNRESET, "ECONNRESET"},
    {EPIPE, "EPIPE"},
    {EHOSTUNREACH, "EHOSTUNREACH"},
    {ENETUNREACH, "ENETUNREACH"},
    {EADDRNOTAVAIL, "EADDRNOTAVAIL"},
    {EMSGSIZE, "EMSGSIZE"},
    {EALREADY, "EALREADY"},
    {ECANCELED, "ECANCELED"},
    {524, "ENOTSUPP"},  // kernel-internal, leaks out of bpf(2) for unsupported attach types
    {LIBBPF_ERRNO__LIBELF, "LIBBPF_ERRNO__LIBELF"},
    {LIBBPF_ERRNO__FORMAT, "LIBBPF_ERRNO__FORMAT"},
    {LIBBPF_ERRNO__KVERSION, "LIBBPF_ERRNO__KVERSION"},
    {LIBBPF_ERRNO__ENDIAN, "LIBBPF_ERRNO__ENDIAN"},
    {LIBBPF_ERRNO__INTERNAL, "LIBBPF_ERRNO__INTERNAL"},
    {LIBBPF_ERRNO__RELOC, "LIBBPF_ERRNO__RELOC"},
    {LIBBPF_ERRNO__LOAD, "LIBBPF_ERRNO__LOAD"},
    {LIBBPF_ERRNO__VERIFY, "LIBBPF_ERRNO__VERIFY"},
    {LIBBPF_ERRNO__PROG2BIG, "LIBBPF_ERRNO__PROG2BIG"},
    {LIBBPF_ERRNO__KVER, "LIBBPF_ERRNO__KVER"},
    {LIBBPF_ERRNO__PROGTYPE, "LIBBPF_ERRNO__PROGTYPE"},
    {LIBBPF_ERRNO__WRNGPID, "LIBBPF_ERRNO__WRNGPID"},
    {LIBBPF_ERRNO__INVSEQ, "LIBBPF_ERRNO__INVSEQ"},
    {LIBBPF_ERRNO__NLPARSE, "LIBBPF_ERRNO__NLPARSE"},
};

std::string FormatMessage(const char* step, int err, const std::string& subject, const std::string& detail) {
  std::string message = std::string(step) + " " + subject + ": " + (detail.empty() ? ErrnoText(err) : detail) +
                        " (" + ErrnoName(err) + ")";
  return message;
}

}  // namespace

void InstallLibbpfPrint() { libbpf_set_print(LibbpfPrint); }

LogCapture::LogCapture() : outer_(current_capture) { current_capture = this; }

LogCapture::~LogCapture() { current_capture = outer_; }

void LogCapture::Append(const char* text, size_t len) {
  text_.append(text, len);
  if (text_.size() > kCaptureLimit) text_.erase(0, text_.size() - kCaptureLimit / 2);
}

std::string LogCapture::Tail() const {
  if (text_.size() <= kLogTail) return text_;
  return "[... " + std::to_string(text_.size() - kLogTail) + " bytes cut ...]\n" +
         text_.substr(text_.size() - kLogTail);
}

std::string ErrnoName(int err) {
  for (const ErrnoEntry& entry : kErrnoNames) {
    if (entry.value == err) return entry.name;
  }
  return "E" + std::to_string(err);
}

std::string ErrnoText(int err) {
  if (err == 524) return "Operation not supported by the kernel";
  char buf[256];
  if (libbpf_strerror(err, buf, sizeof(buf)) == 0) return buf;
  return std::strerror(err);
}

Napi::Value MakeBpfError(Napi::Env env, const char* step, int err, const std::string& subject,
                         const std::string& detail, const std::string& log) {
  if (err <= 0) err = EINVAL;  // a failure always carries a positive errno
  std::string message = FormatMessage(step, err, subject, detail);
  if (!log.empty() && std::strcmp(step, "load") == 0) {
    bool verifier = log.find("BEGIN PROG LOAD LOG") != std::string::npos;
    message += verifier ? "; see error.log for the verifier log" : "; see error.log for libbpf's log";
  }
  Napi::Value log_value = log.empty() ? env.Undefined() : Napi::String::New(env, log);
  Addon* addon = env.GetInstanceData<Addon>();
  if (addon != nullptr && !addon->error_class.IsEmpty()) {
    return addon->error_class.New({Napi::String::New(env, message), Napi::String::New(env, step),
                                   Napi::Number::New(env, err), Napi::String::New(env, ErrnoName(err)), log_value});
  }
  // setErrorClass() was not called: an Error with the same fields.
  Napi::Object error = Napi::Error::New(env, message).Value();
  error.Set("name", "BpfError");
  error.Set("step", step);
  error.Set("errno", err);
  error.Set("code", ErrnoName(err));
  if (!log.empty()) error.Set("log", log_value);
  return error;
}

void ThrowBpfError(Napi::Env env, const char* step, int err, const std::string& subject, const std::string& detail,
                   const std::string& log) {
  throw Napi::Error(env, MakeBpfError(env, step, err, subject, detail, log));
}

}  // namespace otel_ebpf
