# The native addon: node-addon-api with C++ exceptions, linked against the system's shared libbpf (Debian's
# libbpf.a is not built with -fPIC, so it cannot go into a .node). Build: npx node-gyp rebuild -C native
{
  "targets": [
    {
      "target_name": "otel_node_ebpf",
      "sources": ["addon.cc", "errors.cc", "http.cc", "map.cc", "object.cc", "ringbuf.cc", "tcp.cc", "tcp_info.c"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-fexceptions", "-std=c++17", "-O2", "-Wall"],
      "libraries": ["-lbpf", "-lelf", "-lz"]
    }
  ]
}
