# wheel.cmake - how the Python wheel builds libprism, without changing the
# project's own CMakeLists.txt.
#
# pyproject.toml configures the repository root with this file as
# CMAKE_PROJECT_TOP_LEVEL_INCLUDES, so it runs inside the root's project()
# call, before anything else of the root is read.  It does two things:
#
#  1. LLVM: the CPU backend normally links the shared libLLVM-14 (105 MB).
#     A wheel cannot count on the host having it, and shipping it would
#     make the wheel three times larger, so when LLVM's static component
#     libraries are installed (llvm-14-dev has them) their list is put into
#     the root's PRISM_LLVM_LIBRARY cache entry; the root then links those
#     instead of the shared library.  Only the objects the CPU backend uses
#     are pulled in, and their symbols are kept local (--exclude-libs), so
#     another LLVM in the same process (a JIT of some other package) does
#     not collide with ours.  Without static libraries the build falls back
#     to the root's own choice.
#
#  2. At the end of the root's CMakeLists.txt (a deferred call): libprism
#     is installed without version suffixes (a wheel stores symlinks as
#     copies), finds its neighbours through RUNPATH $ORIGIN, and libyaml --
#     which hosts often lack -- is installed next to it.
#
# libcrypto (OpenSSL 3), libstdc++ and glibc come from the host, NVRTC and
# the CUDA driver too (the package loads NVRTC before libprism, see
# src/prism_attn/_lib.py).

set(PRISM_WHEEL_STATIC_LLVM ON CACHE BOOL
    "Link LLVM's static component libraries into the wheel's libprism")

function(prism_wheel_static_llvm)
  if(NOT PRISM_WHEEL_STATIC_LLVM OR PRISM_LLVM_LIBRARY)
    return()
  endif()
  set(version 14)
  if(PRISM_LLVM_VERSION)
    set(version ${PRISM_LLVM_VERSION})
  endif()
  find_program(config NAMES llvm-config-${version}
               HINTS /usr/lib/llvm-${version}/bin)
  if(NOT config)
    return()
  endif()
  set(components core orcjit native passes analysis target)
  execute_process(COMMAND ${config} --link-static --libfiles ${components}
                  OUTPUT_VARIABLE files RESULT_VARIABLE rc ERROR_QUIET
                  OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0 OR files STREQUAL "")
    message(STATUS "wheel: no static LLVM libraries; the shared one is used")
    return()
  endif()
  separate_arguments(files UNIX_COMMAND "${files}")
  foreach(f ${files})
    if(NOT EXISTS ${f})
      message(STATUS "wheel: ${f} missing; the shared LLVM is used")
      return()
    endif()
  endforeach()
  # --system-libs names libraries (z3, xml2) that the components we use do
  # not need; --as-needed (the root's link option) drops those.
  execute_process(COMMAND ${config} --link-static --system-libs
                  OUTPUT_VARIABLE system OUTPUT_STRIP_TRAILING_WHITESPACE)
  separate_arguments(system UNIX_COMMAND "${system}")
  set(PRISM_LLVM_LIBRARY ${files} ${system} stdc++ CACHE STRING
      "LLVM libraries of the CPU backend (static, set by wheel.cmake)" FORCE)
  message(STATUS "wheel: LLVM ${version} linked statically")
endfunction()
prism_wheel_static_llvm()

function(prism_wheel_finish)
  if(NOT TARGET prism_shared)
    message(FATAL_ERROR "wheel.cmake: the root no longer defines prism_shared")
  endif()
  set_property(TARGET prism_shared PROPERTY VERSION)
  set_property(TARGET prism_shared PROPERTY SOVERSION)
  set_property(TARGET prism_shared PROPERTY INSTALL_RPATH "$ORIGIN")
  target_link_options(prism_shared PRIVATE -Wl,--exclude-libs,ALL
                      -Wl,--gc-sections)
  find_library(prism_wheel_yaml NAMES libyaml-0.so.2 yaml)
  if(prism_wheel_yaml)
    get_filename_component(real ${prism_wheel_yaml} REALPATH)
    install(FILES ${real} DESTINATION ${CMAKE_INSTALL_LIBDIR}
            RENAME libyaml-0.so.2)
  endif()
endfunction()
cmake_language(DEFER CALL prism_wheel_finish)
