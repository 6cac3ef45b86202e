# `cmake --install` (and the Debian package, cmake/ElkPackaging.cmake): the binaries, the systemd
# unit, the TLS helper, bash completion, man pages, the examples and the Python client, in the
# usual places under the prefix. Included at the end of the top-level CMakeLists.txt.
include_guard(GLOBAL)
include(GNUInstallDirs)

# All three in bin/: `elektronn train` and elektronnd find elektronn-worker next to themselves
# (worker/locate.h), and `elektronn-worker --help` is a documented command.
set(elk_programs elektronn elektronnd elektronn-worker)
if(TARGET elektronn-sched)
  list(APPEND elk_programs elektronn-sched)
endif()
install(TARGETS ${elk_programs} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# The unit in deploy/ names the package's paths (/usr/bin); installed under another prefix its
# ExecStart must follow, and the prefix is known only at install time (cpack installs with /usr,
# `cmake --install --prefix` with anything), hence the rewrite in install(CODE).
set(elk_unit_out ${PROJECT_BINARY_DIR}/deploy/elektronnd.service)
install(CODE "
  file(READ \"${PROJECT_SOURCE_DIR}/deploy/elektronnd.service\" elk_unit)
  string(REPLACE \"/usr/bin/\" \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}/\"
         elk_unit \"\${elk_unit}\")
  file(WRITE \"${elk_unit_out}\" \"\${elk_unit}\")
")
# systemd reads /usr/lib/systemd/system and /usr/local/lib/systemd/system alike.
set(ELK_INSTALL_SYSTEMDDIR lib/systemd/system CACHE STRING "systemd unit directory (relative: under the prefix)")
install(FILES ${elk_unit_out} DESTINATION ${ELK_INSTALL_SYSTEMDDIR})

set(elk_datadir ${CMAKE_INSTALL_DATADIR}/elektronn)
install(PROGRAMS deploy/tls/make-certs.sh DESTINATION ${elk_datadir}/tls)
install(FILES deploy/tls/README.md DESTINATION ${elk_datadir}/tls)
install(FILES deploy/bash-completion/elektronn
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions)
install(FILES examples/mnist.lua examples/neuro3d.lua examples/neuro3d_lite.lua
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
install(FILES README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})

# The Python client with its generated stubs (python/CMakeLists.txt builds both into one folder).
# The default is Debian's path for /usr; under /usr/local Debian's python3 reads
# lib/python3.X/dist-packages instead, so set this when installing there.
set(ELK_INSTALL_PYTHONDIR lib/python3/dist-packages
    CACHE STRING "where the elektronn_client package goes (relative: under the prefix)")
install(DIRECTORY ${PROJECT_BINARY_DIR}/python/elektronn_client
        DESTINATION ${ELK_INSTALL_PYTHONDIR}
        PATTERN __pycache__ EXCLUDE PATTERN "*.pyc" EXCLUDE)

# Man pages from each binary's --help and --version (Debian's help2man; deploy/bootstrap.sh
# installs it). Without it the build warns and installs none, and the package test fails.
find_program(ELK_HELP2MAN help2man)
if(ELK_HELP2MAN)
  set(elk_man_pages)
  set(elk_man_names_elektronn "submit and steer ELEKTRONN training and prediction jobs")
  set(elk_man_names_elektronnd "the ELEKTRONN per-host training daemon")
  set(elk_man_names_elektronn-worker "the process that trains or predicts one ELEKTRONN job")
  set(elk_man_names_elektronn-sched "starts synchronised ELEKTRONN jobs across hosts")
  foreach(program IN LISTS elk_programs)
    set(page ${PROJECT_BINARY_DIR}/man/${program}.1.gz)
    add_custom_command(
      OUTPUT ${page}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/man
      COMMAND ${ELK_HELP2MAN} --no-info --section=1 "--name=${elk_man_names_${program}}"
              --output=${PROJECT_BINARY_DIR}/man/${program}.1 $<TARGET_FILE:${program}>
      # -n: no time stamp in the archive, so the same page compresses to the same bytes.
      COMMAND gzip -9nf ${PROJECT_BINARY_DIR}/man/${program}.1
      DEPENDS ${program}
      COMMENT "Generating the man page of ${program} (help2man)"
      VERBATIM)
    list(APPEND elk_man_pages ${page})
  endforeach()
  add_custom_target(elk_man_pages ALL DEPENDS ${elk_man_pages})
  install(FILES ${elk_man_pages} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
else()
  message(WARNING "help2man not found (apt-get install help2man, or run deploy/bootstrap.sh): "
                  "no man pages will be installed")
endif()
