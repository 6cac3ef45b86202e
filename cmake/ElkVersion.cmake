# The binaries' identity (--version, the Host service): the release version from project() and
# the source revision from git, in one generated source. A build step rewrites it only when the
# revision changes, so a new commit recompiles that one file and relinks the binaries; every
# other object keeps its ccache key (a -D with the revision would change all their command lines).
include_guard(GLOBAL)
find_package(Git QUIET)
set(elk_revision_cc ${PROJECT_BINARY_DIR}/generated/elk_revision.cc)
set(elk_revision_args -DSOURCE_DIR=${PROJECT_SOURCE_DIR} -DOUTPUT=${elk_revision_cc}
    -DVERSION=${PROJECT_VERSION} -DGIT=${GIT_EXECUTABLE})
# Once now, so the file exists before the first build; then on every build (cheap: one git call).
execute_process(COMMAND ${CMAKE_COMMAND} ${elk_revision_args}
                -P ${CMAKE_CURRENT_LIST_DIR}/ElkWriteRevision.cmake)
add_custom_target(elk_revision
  BYPRODUCTS ${elk_revision_cc}
  COMMAND ${CMAKE_COMMAND} ${elk_revision_args} -P ${CMAKE_CURRENT_LIST_DIR}/ElkWriteRevision.cmake
  VERBATIM)
elk_cc_library(NAME elk_version SRCS ${PROJECT_SOURCE_DIR}/rpc/version.cc ${elk_revision_cc})
add_dependencies(elk_version elk_revision)
