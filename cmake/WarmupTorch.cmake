# Finds LibTorch from the official `torch` wheel (pinned 2.11.x) and defines `warmup::torch`.
#
# The wheel's own TorchConfig.cmake insists on a CUDA toolkit because the wheel is a CUDA build.
# With nvcc present (CI, GPU machines) we use it unchanged; without one (a laptop, a fresh
# Debian) we import the CPU libraries directly, which is all CPU code needs. WARMUP_CUDA picks:
# AUTO (default: CUDA iff nvcc is found), ON, OFF.
set(WARMUP_CUDA AUTO CACHE STRING "Build with CUDA: AUTO, ON or OFF")
set(WARMUP_PYTHON "" CACHE FILEPATH "Python interpreter whose site-packages holds torch")

if(NOT WARMUP_PYTHON)
  if(DEFINED ENV{WARMUP_VENV})
    set(WARMUP_PYTHON "$ENV{WARMUP_VENV}/bin/python" CACHE FILEPATH "" FORCE)
  else()
    set(WARMUP_PYTHON "$ENV{HOME}/.cache/warmup/venv/bin/python" CACHE FILEPATH "" FORCE)
  endif()
endif()
if(NOT WARMUP_TORCH_PREFIX)
  execute_process(
    COMMAND ${WARMUP_PYTHON} -c "import torch.utils; print(torch.utils.cmake_prefix_path)"
    OUTPUT_VARIABLE _prefix OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0 OR NOT _prefix)
    message(FATAL_ERROR "cannot import torch with ${WARMUP_PYTHON}; run scripts/setup.sh "
                        "or pass -DWARMUP_PYTHON=/path/to/python")
  endif()
  set(WARMUP_TORCH_PREFIX "${_prefix}" CACHE PATH "torch.utils.cmake_prefix_path")
endif()
get_filename_component(WARMUP_TORCH_ROOT "${WARMUP_TORCH_PREFIX}/../.." ABSOLUTE)

if(WARMUP_CUDA STREQUAL "AUTO")
  find_program(_nvcc nvcc HINTS /usr/local/cuda/bin)
  if(_nvcc)
    set(WARMUP_WITH_CUDA ON)
  else()
    set(WARMUP_WITH_CUDA OFF)
  endif()
else()
  set(WARMUP_WITH_CUDA ${WARMUP_CUDA})
endif()

file(STRINGS "${WARMUP_TORCH_ROOT}/include/torch/headeronly/version.h" _ver
     REGEX "#define TORCH_VERSION_(MAJOR|MINOR|PATCH) ")
string(REGEX REPLACE ".*MAJOR ([0-9]+).*MINOR ([0-9]+).*PATCH ([0-9]+).*" "\\1.\\2.\\3"
       WARMUP_TORCH_VERSION "${_ver}")
if(NOT WARMUP_TORCH_VERSION MATCHES "^2\\.11\\.")
  message(WARNING "torch ${WARMUP_TORCH_VERSION} found; warmup is pinned to 2.11.x")
endif()

add_library(warmup_torch INTERFACE)
add_library(warmup::torch ALIAS warmup_torch)
if(WARMUP_WITH_CUDA)
  list(APPEND CMAKE_PREFIX_PATH "${WARMUP_TORCH_PREFIX}")
  if(NOT CUDAToolkit_ROOT AND EXISTS /usr/local/cuda)
    set(CUDAToolkit_ROOT /usr/local/cuda)
  endif()
  # Without this, Caffe2's config compiles and runs a CUDA probe to detect local GPUs, which
  # fails on machines without one. 9.0 = H100/H200; override for other cards.
  set(TORCH_CUDA_ARCH_LIST "9.0" CACHE STRING "CUDA architectures for warmup's CUDA code")
  find_package(Torch REQUIRED)
  target_link_libraries(warmup_torch INTERFACE ${TORCH_LIBRARIES})
  target_compile_definitions(warmup_torch INTERFACE WARMUP_WITH_CUDA=1)
else()
  foreach(_lib torch_cpu c10)
    find_library(WARMUP_${_lib}_LIB ${_lib} PATHS "${WARMUP_TORCH_ROOT}/lib" NO_DEFAULT_PATH REQUIRED)
    target_link_libraries(warmup_torch INTERFACE ${WARMUP_${_lib}_LIB})
  endforeach()
  target_include_directories(warmup_torch SYSTEM INTERFACE
    "${WARMUP_TORCH_ROOT}/include" "${WARMUP_TORCH_ROOT}/include/torch/csrc/api/include")
  target_compile_definitions(warmup_torch INTERFACE _GLIBCXX_USE_CXX11_ABI=1 WARMUP_WITH_CUDA=0)
  target_link_options(warmup_torch INTERFACE "LINKER:-rpath,${WARMUP_TORCH_ROOT}/lib")
endif()
# The wheel's libtorch*.so export their own copies of std::filesystem (statically linked), and
# those crash when called from our code (seen: remove_all jumping to address 0). Listing
# libstdc++ first among the executable's DT_NEEDED makes the dynamic linker bind to libstdc++.
target_link_options(warmup_torch INTERFACE "SHELL:-Wl,--push-state,--no-as-needed -lstdc++ -Wl,--pop-state")
# Installed binaries and plugins find LibTorch (and the other shared libraries they link) where
# they were found at build time.
set(CMAKE_INSTALL_RPATH "${WARMUP_TORCH_ROOT}/lib")
set(CMAKE_INSTALL_RPATH_USE_LINK_PATH TRUE)
message(STATUS "warmup: torch ${WARMUP_TORCH_VERSION} at ${WARMUP_TORCH_ROOT}, CUDA ${WARMUP_WITH_CUDA}")
