# The "format: clang-format" test: every tracked C++ file (git ls-files *.cpp *.h) must be
# formatted as .clang-format says. Lists the files that differ and how to fix them.
#   cmake -DSOURCE_DIR=<repo> -P check_format.cmake
# Prints "SKIPPED: <reason>" (the test's SKIP_REGULAR_EXPRESSION) when clang-format or git is
# missing, so CTest reports it skipped rather than passed.
find_program(CLANG_FORMAT NAMES clang-format clang-format-16 clang-format-15 clang-format-14)
if(NOT CLANG_FORMAT)
  message("SKIPPED: clang-format is not installed (scripts/setup.sh installs it)")
  return()
endif()
find_program(GIT git)
if(NOT GIT OR NOT EXISTS "${SOURCE_DIR}/.git")
  message("SKIPPED: not a git checkout, so there is no list of tracked files to check")
  return()
endif()
execute_process(COMMAND "${GIT}" ls-files -- "*.cpp" "*.h" WORKING_DIRECTORY "${SOURCE_DIR}"
  OUTPUT_VARIABLE files RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "git ls-files failed in ${SOURCE_DIR}")
endif()
string(REPLACE "\n" ";" files "${files}")
set(present "")
foreach(f IN LISTS files)
  if(EXISTS "${SOURCE_DIR}/${f}")  # skip files deleted in the work tree, not yet committed
    list(APPEND present "${f}")
  endif()
endforeach()
list(LENGTH present checked)
# One clang-format run over all files (one per file costs a process start each); every
# violation is reported as "<file>:<line>:<col>: error: code should be clang-formatted".
execute_process(COMMAND "${CLANG_FORMAT}" --dry-run -Werror --style=file ${present}
  WORKING_DIRECTORY "${SOURCE_DIR}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
string(REGEX MATCHALL "[^\n]+:[0-9]+:[0-9]+: error" errors "${out}")
set(differ "")
foreach(e IN LISTS errors)
  string(REGEX REPLACE ":[0-9]+:[0-9]+: error$" "" f "${e}")
  list(APPEND differ "${f}")
endforeach()
list(REMOVE_DUPLICATES differ)
if(NOT rc EQUAL 0 AND NOT differ)  # failed without naming a file: show what it said
  message(FATAL_ERROR "clang-format failed (exit ${rc}):\n${out}")
endif()
execute_process(COMMAND "${CLANG_FORMAT}" --version OUTPUT_VARIABLE version
  OUTPUT_STRIP_TRAILING_WHITESPACE)
list(LENGTH differ n)
if(n GREATER 0)
  list(JOIN differ "\n  " listing)
  message(FATAL_ERROR "${n} of ${checked} tracked C++ files differ from .clang-format "
    "(${version}):\n  ${listing}\nfix: clang-format -i <file> (see the diff with "
    "clang-format --dry-run <file>)")
endif()
message("all ${checked} tracked C++ files are formatted (${version})")
