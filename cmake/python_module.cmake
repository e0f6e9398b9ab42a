# The pybind11 extension module normkit._core, linked to normkit::core (built by this
# project, or found as a prebuilt package: NORMKIT_PREBUILT_CORE in CMakeLists.txt).
find_package(Python 3.9 REQUIRED COMPONENTS Interpreter Development.Module)
find_package(pybind11 CONFIG REQUIRED)
file(GLOB NORMKIT_PY_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/python/src/*.cpp)
pybind11_add_module(_core MODULE ${NORMKIT_PY_SOURCES})
target_link_libraries(_core PRIVATE normkit::core)
target_include_directories(_core PRIVATE ${PROJECT_SOURCE_DIR}/python/src)  # + the core's public headers
target_compile_options(_core PRIVATE ${NORMKIT_OPT_FLAGS})
install(TARGETS _core LIBRARY DESTINATION normkit)
