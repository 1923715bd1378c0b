# spoold_headers(<target> [FOLDER <folder>])
#
# The layer rule (see the graph at the top of CMakeLists.txt): a library sees its own headers and
# those of the libraries it links, nothing else. Sources spell every include from the repository
# root ("spool/spool.h"), but the root itself is on no include path. Instead each folder gets a
# directory of its own in the build tree holding a single symlink,
#     ${PROJECT_BINARY_DIR}/include/<folder>/<folder> -> ${PROJECT_SOURCE_DIR}/<folder>
# and that directory is <target>'s PUBLIC include directory (INTERFACE for a header-only library).
# So "spool/spool.h" resolves only in targets that link spool, directly or through a PUBLIC
# dependency; elsewhere it is "No such file or directory". tests/layers/ checks that.
# FOLDER defaults to the name of the current source directory.
include_guard(GLOBAL)

function(spoold_headers target)
  cmake_parse_arguments(H "" "FOLDER" "" ${ARGN})
  if(NOT H_FOLDER)
    cmake_path(GET CMAKE_CURRENT_SOURCE_DIR FILENAME H_FOLDER)
  endif()
  set(dir "${PROJECT_BINARY_DIR}/include/${H_FOLDER}")
  set(link "${dir}/${H_FOLDER}")
  set(to "${PROJECT_SOURCE_DIR}/${H_FOLDER}")
  if(NOT IS_DIRECTORY "${to}")
    message(FATAL_ERROR "spoold_headers(${target}): no folder ${to}")
  endif()
  set(current "")
  if(IS_SYMLINK "${link}")
    file(READ_SYMLINK "${link}" current)
  endif()
  if(NOT current STREQUAL to)
    file(MAKE_DIRECTORY "${dir}")
    file(REMOVE "${link}")
    file(CREATE_LINK "${to}" "${link}" SYMBOLIC)
  endif()
  get_target_property(type ${target} TYPE)
  if(type STREQUAL "INTERFACE_LIBRARY")
    target_include_directories(${target} INTERFACE "${dir}")
  else()
    target_include_directories(${target} PUBLIC "${dir}")
  endif()
endfunction()
