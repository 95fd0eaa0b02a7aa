"""A small native library that tells a CPU-only torch build one CUDA device exists.

Why: fake CUDA tensors (:mod:`tests.support.simcuda`) carry shapes and devices, but the C++
side of torch still asks for a CUDA device guard (``Tensor.to("cuda")``) and CUDA hooks (the
autograd engine, AOTAutograd and Inductor ask whether a CUDA device is there). This library
registers a guard that does nothing and hooks that report one device. It must be loaded with
``LD_PRELOAD`` so that it registers before torch initialises; :func:`preload_env` gives the
environment for a child process. Built once per torch version with g++ into the test cache.

A CUDA build of torch without a driver (the GPU machine's torch, tested here) has real hooks
that report no device: the shim's hooks are registered at a higher priority and replace them
(libtorch_cuda then prints "Higher priority item already registered, skipping registration of
CUDAHooks" once); its guard is replaced by the real one, which fake mode swaps for a no-op guard
itself. Where a GPU is there, no shim.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import torch

SOURCE = r"""
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

namespace simcuda {
using c10::Device;
using c10::DeviceIndex;
using c10::DeviceType;
using c10::Stream;

const Device kDevice(DeviceType::CUDA, 0);

// Every guard operation succeeds and changes nothing: there is one device, with one stream.
struct OneDeviceGuard final : public c10::impl::NoOpDeviceGuardImpl<DeviceType::CUDA> {
  Device exchangeDevice(Device) const override { return kDevice; }
  Device getDevice() const override { return kDevice; }
  Stream getStream(Device) const noexcept override { return Stream(Stream::DEFAULT, kDevice); }
  Stream exchangeStream(Stream) const noexcept override { return Stream(Stream::DEFAULT, kDevice); }
  Stream getDefaultStream(Device) const override { return Stream(Stream::DEFAULT, kDevice); }
  void record(void** event, const Stream&, const DeviceIndex, const c10::EventFlag) const override {
    static int recorded;
    *event = &recorded;
  }
  void block(void*, const Stream&) const override {}
  bool queryEvent(void*) const override { return true; }
  bool queryStream(const Stream&) const override { return true; }
  void synchronizeStream(const Stream&) const override {}
  void synchronizeEvent(void*) const override {}
  void synchronizeDevice(const DeviceIndex) const override {}
  void recordDataPtrOnStream(const c10::DataPtr&, const Stream&) const override {}
};

// What the engine and the compiler ask before they touch CUDA: built, available, one device.
struct OneDeviceHooks : public at::CUDAHooksInterface {
  explicit OneDeviceHooks(at::CUDAHooksArgs) {}
  bool isBuilt() const override { return true; }
  bool isAvailable() const override { return true; }
  bool hasCUDA() const override { return true; }
  bool hasPrimaryContext(DeviceIndex) const override { return true; }
  void init() const override {}
  DeviceIndex deviceCount() const override { return 1; }
  void setCurrentDevice(DeviceIndex) const override {}
  DeviceIndex getCurrentDevice() const override { return 0; }
  DeviceIndex exchangeDevice(DeviceIndex) const override { return 0; }
  DeviceIndex maybeExchangeDevice(DeviceIndex) const override { return 0; }
};
}  // namespace simcuda

C10_REGISTER_GUARD_IMPL(CUDA, simcuda::OneDeviceGuard);
namespace at {
// Preferred over the CUDA build's own hooks (registered later, by libtorch_cuda, at the default
// priority), which without a driver report no device.
C10_REGISTER_CLASS_WITH_PRIORITY(CUDAHooksRegistry, CUDAHooks, c10::REGISTRY_PREFERRED, simcuda::OneDeviceHooks);
}
"""


def torch_is_cpu_only() -> bool:
    return torch.version.cuda is None


def cache_dir() -> Path:
    """Where the library is built: the test cache, one folder per torch version, install and source
    (the library finds torch's libraries by their path: a torch installed elsewhere gets its own)."""
    base = os.environ.get("SPEEDRUN_TEST_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "speedrun-test")
    key = hashlib.sha256(f"{torch_lib_dir()}\n{SOURCE}".encode()).hexdigest()[:10]
    return Path(base) / "simcuda" / f"torch-{importlib.metadata.version('torch')}-{key}"


def build() -> Path:
    """The library's path, built now if missing (about 20 s on 2 cores).

    A plain shared library linked to c10 and libtorch only (not to Python), so that any process
    that inherits the preload, a shell or a compiler, still starts."""
    from torch.utils import cpp_extension

    library = cache_dir() / "libsimcuda.so"
    if library.is_file():
        return library
    library.parent.mkdir(parents=True, exist_ok=True)
    source = library.with_suffix(".cpp")
    source.write_text(SOURCE)
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    partial = library.with_suffix(f".{os.getpid()}.tmp")
    command = ["g++", "-shared", "-fPIC", "-O1", "-std=c++17", f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
               *(f"-I{p}" for p in cpp_extension.include_paths()), str(source),
               f"-L{torch_lib_dir()}", "-lc10", "-ltorch_cpu", f"-Wl,-rpath,{torch_lib_dir()}", "-o", str(partial)]
    subprocess.run(command, check=True, capture_output=True, text=True)
    os.replace(partial, library)
    return library


def torch_lib_dir() -> str:
    return os.path.join(os.path.dirname(torch.__file__), "lib")


def preload_env() -> dict[str, str]:
    """The environment a child process needs to start with the library loaded: for a CPU-only
    build, and for a CUDA build that sees no GPU (its hooks then report no device, and the
    autograd engine stops at ``hasPrimaryContext(0)``). Empty where a GPU is there."""
    if not torch_is_cpu_only() and torch.cuda.is_available():
        return {}
    return {"LD_PRELOAD": str(build())}


def child_sees_cuda() -> bool:
    """Whether a child started with :func:`preload_env` reports a CUDA accelerator."""
    probe = "import torch; a = torch._C._accelerator_getAccelerator(); print(a.type if a is not None else None)"
    out = subprocess.run([sys.executable, "-c", probe], env={**os.environ, **preload_env()}, capture_output=True,
                         text=True, timeout=120)
    return out.stdout.strip() == "cuda"
