# Shared CMake helpers.

# cairn_test(NAME SOURCES... [LIBS libs...] [LABELS labels...] [TIMEOUT s])
# Registers a GoogleTest binary with ctest. Every test in the tree goes through
# here so labels, timeouts and the test-only support library stay uniform.
function(cairn_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "LIBS;LABELS" ${ARGN})
  add_executable(${name} ${T_UNPARSED_ARGUMENTS})
  target_link_libraries(${name} PRIVATE ${T_LIBS} cairn_testing GTest::gtest GTest::gmock GTest::gtest_main)
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  if(NOT T_LABELS)
    set(T_LABELS unit)
  endif()
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}"
    ENVIRONMENT "CAIRN_BUILD_DIR=${CMAKE_BINARY_DIR}")
endfunction()

# cairn_executables(OUT_VAR DIR): every executable target defined in DIR and
# below (for build-wide additions such as the TSan annotations).
function(cairn_executables out dir)
  set(found)
  get_property(targets DIRECTORY ${dir} PROPERTY BUILDSYSTEM_TARGETS)
  foreach(t ${targets})
    get_target_property(type ${t} TYPE)
    if(type STREQUAL "EXECUTABLE")
      list(APPEND found ${t})
    endif()
  endforeach()
  get_property(subdirs DIRECTORY ${dir} PROPERTY SUBDIRECTORIES)
  foreach(d ${subdirs})
    cairn_executables(sub ${d})
    list(APPEND found ${sub})
  endforeach()
  set(${out} ${found} PARENT_SCOPE)
endfunction()
