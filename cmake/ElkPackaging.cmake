# The Debian package (`cpack -G DEB` in a build folder, or scripts/package for a portable build):
# what cmake/ElkInstall.cmake installs, under /usr, with dependencies from dpkg-shlibdeps and
# maintainer scripts (deploy/debian/) that create the `elektronn` user and /var/lib/elektronnd.
# tests/package/package_test.sh builds it and checks it.
include_guard(GLOBAL)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME elektronn)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "ELEKTRONN")
set(CPACK_PACKAGE_CONTACT "ELEKTRONN maintainers <elektronn@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "3-D convolutional networks for electron microscopy: training daemon and client")
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "ELEKTRONN trains and applies 3-D convolutional networks on electron-microscopy volumes.
 This package holds elektronnd, the per-host daemon (a systemd unit, loopback by default),
 elektronn, the client that submits and steers jobs, elektronn-worker, the job process,
 the Python client, bash completion, the TLS helper and the example job files.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Runtime libraries: dpkg-shlibdeps reads the binaries' DT_NEEDED (Debian 12: dpkg-dev).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# The maintainer scripts' tools; the Python client's modules and the TLS helper's openssl are
# not needed by the daemon, hence Recommends.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "python3-grpcio, python3-protobuf, python3-numpy, openssl")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "bash-completion")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/deploy/debian/postinst ${PROJECT_SOURCE_DIR}/deploy/debian/prerm
    ${PROJECT_SOURCE_DIR}/deploy/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
set(CPACK_STRIP_FILES TRUE)
set(CPACK_DEBIAN_COMPRESSION_TYPE xz)
# Only what install() names; cpack's own copy of the tree goes to -B (the package test: a temp dir).
set(CPACK_SOURCE_GENERATOR "")
include(CPack)
