# The pybind11 extension module normkit._core, linked to normkit::core (built by this
# project, or found as a prebuilt package: NORMKIT_PREBUILT_CORE in CMakeLists.txt).
find_package(Python 3.9 REQUIRED COMPONENTS Interpreter Development.Module)
find_package(pybind11 CONFIG REQUIRED)
file(GLOB NORMKIT_PY_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/python/src/*.cpp)
# NO_EXTRAS, then pybind11's extras but one: a release module keeps its symbol table (strip
# --strip-debug, not strip), so that `perf record` / `python -m normkit.bench.profile --perf`
# on an installed wheel can tell the kernels' passes apart (~0.6 MB, ~9% of the module).
pybind11_add_module(_core MODULE NO_EXTRAS ${NORMKIT_PY_SOURCES})
if(NOT DEFINED CMAKE_INTERPROCEDURAL_OPTIMIZATION)
  target_link_libraries(_core PRIVATE pybind11::lto)
endif()
string(TOUPPER "${CMAKE_BUILD_TYPE}" NORMKIT_BUILD_TYPE_UC)
if(CMAKE_STRIP AND NOT WIN32 AND NOT APPLE AND NORMKIT_BUILD_TYPE_UC MATCHES "^(RELEASE|MINSIZEREL)$")
  add_custom_command(TARGET _core POST_BUILD
                     COMMAND ${CMAKE_STRIP} --strip-debug $<TARGET_FILE:_core>)
endif()
target_link_libraries(_core PRIVATE normkit::core)
target_include_directories(_core PRIVATE ${PROJECT_SOURCE_DIR}/python/src)  # + the core's public headers
target_compile_options(_core PRIVATE ${NORMKIT_OPT_FLAGS})
install(TARGETS _core LIBRARY DESTINATION normkit)
