// nasc example: load a bundle's compiled model with the TVM runtime, run the sample input through
// the Relax VM, print every output and compare it with the bundle's expected output.
//
// Build: make -C example            (see example/Makefile for a board's cross build)
// Run:   example/run_model .        (from the unpacked bundle's top folder)
//
// Only the TVM runtime is needed (libtvm_runtime + libtvm_ffi), not the TVM compiler, and only the
// tvm-ffi headers (the apache-tvm wheel ships an incomplete set of tvm/runtime headers).
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/shape.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "model_info.h"

namespace {

// CPU memory for input tensors, 64-byte aligned as TVM's kernels prefer.
struct CpuAlloc {
  void AllocData(DLTensor* tensor) {
    const size_t size = tvm::ffi::GetDataSize(*tensor);
    tensor->data = std::aligned_alloc(64, (size + 63) / 64 * 64 + 64);
    if (tensor->data == nullptr) throw std::bad_alloc();
  }
  void FreeData(DLTensor* tensor) { std::free(tensor->data); }
};

// Relax VM allocator kind (tvm/runtime/memory/memory_manager.h: kNaive = 1, kPooled = 2).
constexpr int kPooledAllocator = 2;

struct Npy {
  std::string descr;  // for example "<f4"
  std::vector<int64_t> shape;
  std::vector<char> data;
};

// Read a C-ordered little-endian .npy file (format 1.0 or 2.0), as written by numpy.save.
Npy ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0) {
    throw std::runtime_error(path + ": not a .npy file");
  }
  const unsigned char major = static_cast<unsigned char>(bytes[6]);
  size_t header_len = 0;
  size_t offset = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    offset = 10;
  } else {
    if (bytes.size() < 12) throw std::runtime_error(path + ": truncated .npy header");
    for (int i = 0; i < 4; ++i) header_len |= static_cast<size_t>(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
    offset = 12;
  }
  if (offset + header_len > bytes.size()) throw std::runtime_error(path + ": truncated .npy header");
  const std::string header(bytes.data() + offset, header_len);
  Npy npy;
  const size_t d = header.find("'descr':");
  const size_t q1 = header.find('\'', d + 8);
  const size_t q2 = header.find('\'', q1 + 1);
  if (d == std::string::npos || q1 == std::string::npos || q2 == std::string::npos) {
    throw std::runtime_error(path + ": no descr in .npy header");
  }
  npy.descr = header.substr(q1 + 1, q2 - q1 - 1);
  if (header.find("'fortran_order': False") == std::string::npos) {
    throw std::runtime_error(path + ": only C-ordered .npy files are supported");
  }
  const size_t s = header.find("'shape':");
  const size_t p1 = header.find('(', s);
  const size_t p2 = header.find(')', p1);
  if (s == std::string::npos || p1 == std::string::npos || p2 == std::string::npos) {
    throw std::runtime_error(path + ": no shape in .npy header");
  }
  std::stringstream dims(header.substr(p1 + 1, p2 - p1 - 1));
  std::string item;
  while (std::getline(dims, item, ',')) {
    if (item.find_first_not_of(" ") != std::string::npos) npy.shape.push_back(std::stoll(item));
  }
  npy.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(offset + header_len), bytes.end());
  return npy;
}

// numpy descr ("<f4") -> DLPack data type.
DLDataType DTypeOf(const std::string& descr, const std::string& path) {
  if (descr.size() < 3 || (descr[0] != '<' && descr[0] != '|')) {
    throw std::runtime_error(path + ": only little-endian .npy data is supported, got " + descr);
  }
  const char kind = descr[1];
  const int bits = 8 * std::stoi(descr.substr(2));
  DLDataType t;
  t.bits = static_cast<uint8_t>(bits);
  t.lanes = 1;
  if (kind == 'f') {
    t.code = kDLFloat;
  } else if (kind == 'i') {
    t.code = kDLInt;
  } else if (kind == 'u') {
    t.code = kDLUInt;
  } else if (kind == 'b') {
    t.code = kDLBool;
  } else {
    throw std::runtime_error(path + ": unsupported .npy dtype " + descr);
  }
  return t;
}

// One element of a CPU tensor as double (for printing and comparing).
double ElementAt(const void* data, DLDataType t, int64_t i) {
  if (t.code == kDLFloat && t.bits == 32) return static_cast<const float*>(data)[i];
  if (t.code == kDLFloat && t.bits == 64) return static_cast<const double*>(data)[i];
  if (t.code == kDLInt && t.bits == 8) return static_cast<const int8_t*>(data)[i];
  if (t.code == kDLInt && t.bits == 16) return static_cast<const int16_t*>(data)[i];
  if (t.code == kDLInt && t.bits == 32) return static_cast<const int32_t*>(data)[i];
  if (t.code == kDLInt && t.bits == 64) return static_cast<double>(static_cast<const int64_t*>(data)[i]);
  if ((t.code == kDLUInt || t.code == kDLBool) && t.bits == 8) return static_cast<const uint8_t*>(data)[i];
  throw std::runtime_error("cannot print dtype code " + std::to_string(t.code) + " bits " + std::to_string(t.bits));
}

int64_t NumElements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string ShapeText(const int64_t* shape, int ndim) {
  std::string text;
  for (int i = 0; i < ndim; ++i) text += (i ? "x" : "") + std::to_string(shape[i]);
  return text.empty() ? "scalar" : text;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string root = argc > 1 ? argv[1] : ".";
  const char* library_file = NASC_LIBRARY_FILE;
  const char* input_files[] = NASC_INPUT_SAMPLE_FILES;
  const char* input_names[] = NASC_INPUT_NAMES;
  const char* output_files[] = NASC_OUTPUT_EXPECTED_FILES;
  const char* output_names[] = NASC_OUTPUT_NAMES;
  try {
    DLDevice cpu{kDLCPU, 0};
    // The library holds a Relax VM executable: load it, then create a VM on the CPU.
    tvm::ffi::Module library = tvm::ffi::Module::LoadFromFile(root + "/" + library_file);
    tvm::ffi::Optional<tvm::ffi::Function> load_executable = library->GetFunction("vm_load_executable");
    if (!load_executable.has_value()) {
      throw std::runtime_error(std::string(library_file) + " is not a Relax VM executable (no vm_load_executable)");
    }
    tvm::ffi::Module vm = (*load_executable)().cast<tvm::ffi::Module>();
    tvm::ffi::Optional<tvm::ffi::Function> init = vm->GetFunction("vm_initialization");
    if (!init.has_value()) throw std::runtime_error("the VM has no vm_initialization");
    // (device type, device id, allocator) for the device, then the same for the host.
    (*init)(static_cast<int>(kDLCPU), 0, kPooledAllocator, static_cast<int>(kDLCPU), 0, kPooledAllocator);
    tvm::ffi::Optional<tvm::ffi::Function> entry = vm->GetFunction("main");
    if (!entry.has_value()) throw std::runtime_error("the VM has no function main");

    std::vector<tvm::ffi::Any> inputs;
    for (int i = 0; i < NASC_NUM_INPUTS; ++i) {
      const std::string path = root + "/" + input_files[i];
      Npy npy = ReadNpy(path);
      tvm::ffi::Shape shape(npy.shape);
      tvm::ffi::Tensor tensor = tvm::ffi::Tensor::FromNDAlloc(CpuAlloc(), shape, DTypeOf(npy.descr, path), cpu);
      const size_t nbytes = tvm::ffi::GetDataSize(static_cast<size_t>(NumElements(npy.shape)), tensor.dtype());
      if (nbytes != npy.data.size()) throw std::runtime_error(path + ": data size does not match its shape");
      std::memcpy(tensor.data_ptr(), npy.data.data(), nbytes);
      std::printf("input %d \"%s\" %s %s\n", i, input_names[i], npy.descr.c_str(),
                  ShapeText(npy.shape.data(), static_cast<int>(npy.shape.size())).c_str());
      inputs.emplace_back(tensor);
    }
    std::vector<tvm::ffi::AnyView> args(inputs.begin(), inputs.end());
    tvm::ffi::Any result;
    entry.value().CallPacked(args.data(), static_cast<int32_t>(args.size()), &result);

    std::vector<tvm::ffi::Tensor> outputs;
    if (auto tensor = result.as<tvm::ffi::Tensor>()) {
      outputs.push_back(*tensor);
    } else if (auto tuple = result.as<tvm::ffi::Array<tvm::ffi::Any>>()) {
      for (size_t i = 0; i < tuple->size(); ++i) outputs.push_back((*tuple)[i].cast<tvm::ffi::Tensor>());
    } else {
      throw std::runtime_error("main returned neither a tensor nor a tuple of tensors");
    }
    if (static_cast<int>(outputs.size()) != NASC_NUM_OUTPUTS) {
      throw std::runtime_error("main returned " + std::to_string(outputs.size()) + " outputs, model_info.h says " +
                               std::to_string(NASC_NUM_OUTPUTS));
    }

    bool all_close = true;
    for (int i = 0; i < NASC_NUM_OUTPUTS; ++i) {
      const tvm::ffi::Tensor& out = outputs[static_cast<size_t>(i)];
      const int64_t n = out.numel();
      if (out.device().device_type != kDLCPU || !out.IsContiguous()) {
        throw std::runtime_error("output " + std::to_string(i) + " is not a contiguous CPU tensor");
      }
      std::vector<char> host(tvm::ffi::GetDataSize(static_cast<size_t>(n), out.dtype()));
      std::memcpy(host.data(), static_cast<const char*>(out.data_ptr()) + out.byte_offset(), host.size());
      std::printf("output %d \"%s\" %s\n", i, output_names[i], ShapeText(out.shape().data(), out.ndim()).c_str());
      std::printf("values");
      for (int64_t k = 0; k < n; ++k) std::printf(" %.9g", ElementAt(host.data(), out.dtype(), k));
      std::printf("\n");

      const std::string path = root + "/" + output_files[i];
      Npy expected = ReadNpy(path);
      const DLDataType et = DTypeOf(expected.descr, path);
      if (NumElements(expected.shape) != n) throw std::runtime_error(path + ": element count differs from the output");
      double max_abs_err = 0.0;
      bool close = true;
      for (int64_t k = 0; k < n; ++k) {
        const double got = ElementAt(host.data(), out.dtype(), k);
        const double want = ElementAt(expected.data.data(), et, k);
        const double err = std::fabs(got - want);
        if (err > max_abs_err) max_abs_err = err;
        if (!(err <= NASC_SAMPLE_ATOL + NASC_SAMPLE_RTOL * std::fabs(want))) close = false;
      }
      std::printf("max_abs_err %.3g against %s: %s\n", max_abs_err, output_files[i], close ? "ok" : "MISMATCH");
      all_close = all_close && close;
    }
    std::printf("%s\n", all_close ? "PASS" : "FAIL");
    return all_close ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "run_model: %s\n", e.what());
    return 2;
  }
}
