# cmake/Packaging.cmake — install rules and the Debian package (`cpack -G DEB` in the build dir).
# Rule: the .deb follows Debian's layout for an MTA: binaries in /usr/sbin, /usr/sbin/sendmail,
# /usr/lib/sendmail, /usr/bin/mailq and /usr/bin/newaliases as links to spoolctl, the config in /etc/spoold as a conffile,
# the unit in /lib/systemd/system, sysusers/tmpfiles in /usr/lib, gzipped man pages and docs, and
# Provides/Conflicts/Replaces mail-transport-agent. Nothing is shipped set-uid: postinst sets
# spoolctl 4755 spoold:spoold through dpkg-statoverride (docs/spoolctl.md, "Permissions").
# Included once from the top-level CMakeLists.txt, after every target exists.
include_guard(GLOBAL)

if(NOT TARGET spoold OR NOT TARGET spoolctl)
  message(STATUS "packaging: spoold or spoolctl not in the build; no install rules")
  return()
endif()

# spoold is a system daemon: its unit runs /usr/sbin/spoold, so a plain `cmake --install` goes to
# /usr like the package does, unless a prefix was chosen (the unit then needs editing).
if(CMAKE_INSTALL_PREFIX_INITIALIZED_TO_DEFAULT)
  set(CMAKE_INSTALL_PREFIX "/usr" CACHE PATH "Install prefix" FORCE)
endif()

# Destinations. Relative ones are under the prefix (/usr in the package); /etc and the systemd unit
# directory are absolute, as Debian wants them whatever the prefix.
set(SPOOLD_INSTALL_SYSCONFDIR "/etc" CACHE PATH "Where spoold/spoold.yaml is installed")
set(SPOOLD_INSTALL_UNITDIR "/lib/systemd/system" CACHE PATH "Where spoold.service is installed")
set(_pkg_doc "share/doc/spoold")
set(_pkg_out "${PROJECT_BINARY_DIR}/packaging")
set(_pkg_src "${PROJECT_SOURCE_DIR}/packaging")
file(MAKE_DIRECTORY "${_pkg_out}/links" "${_pkg_out}/man" "${_pkg_out}/doc")

# --- generated files: gzip -9n (no name, no time stamp: reproducible, as lintian asks) -------------
find_program(SPOOLD_GZIP gzip REQUIRED)
set(_pkg_gz)
function(_spoold_gzip src dst)
  add_custom_command(OUTPUT "${dst}" COMMAND "${SPOOLD_GZIP}" -9n -c "${src}" > "${dst}"
                     DEPENDS "${src}" COMMENT "gzip ${dst}" VERBATIM)
  set(_pkg_gz ${_pkg_gz} "${dst}" PARENT_SCOPE)
endfunction()

set(_pkg_man8 spoold.8 spoolctl.8)
set(_pkg_man5 spoold.yaml.5)
foreach(page IN LISTS _pkg_man8 _pkg_man5)
  _spoold_gzip("${PROJECT_SOURCE_DIR}/man/${page}" "${_pkg_out}/man/${page}.gz")
endforeach()

# Debian changelog of this native package (required by policy, checked by lintian).
string(TIMESTAMP _pkg_date "%a, %d %b %Y 00:00:00 +0000" UTC)
set(SPOOLD_MAINTAINER "spoold developers <spoold@example.org>")
file(CONFIGURE OUTPUT "${_pkg_out}/doc/changelog" CONTENT
"spoold (${PROJECT_VERSION}) unstable; urgency=medium

  * Release ${PROJECT_VERSION}.

 -- ${SPOOLD_MAINTAINER}  ${_pkg_date}
")
_spoold_gzip("${_pkg_out}/doc/changelog" "${_pkg_out}/doc/changelog.gz")
# Every page the README links from docs/ (the README's links name docs/PAGE.md; here they sit side
# by side in /usr/share/doc/spoold).
set(_pkg_docs README.md docs/design.md docs/configuration.md docs/spoolctl.md docs/spool-format.md
    docs/control-protocol.md docs/reliability.md docs/performance.md docs/roadmap.md)
foreach(doc IN LISTS _pkg_docs)
  get_filename_component(name "${doc}" NAME)
  _spoold_gzip("${PROJECT_SOURCE_DIR}/${doc}" "${_pkg_out}/doc/${name}.gz")
endforeach()
add_custom_target(spoold_package_files ALL DEPENDS ${_pkg_gz})

# Links are made in the build tree and installed as links (file(INSTALL) copies a symlink as one).
function(_spoold_link name target)
  file(CREATE_LINK "${target}" "${_pkg_out}/links/${name}" SYMBOLIC)
endfunction()
file(MAKE_DIRECTORY "${_pkg_out}/links/sbin" "${_pkg_out}/links/bin" "${_pkg_out}/links/lib"
     "${_pkg_out}/links/man8")
_spoold_link(sbin/sendmail spoolctl)
_spoold_link(lib/sendmail ../sbin/sendmail)
_spoold_link(bin/mailq ../sbin/spoolctl)
_spoold_link(bin/newaliases ../sbin/spoolctl)
_spoold_link(man8/sendmail.8.gz spoolctl.8.gz)
_spoold_link(man8/mailq.8.gz spoolctl.8.gz)
_spoold_link(man8/newaliases.8.gz spoolctl.8.gz)

# --- install rules ------------------------------------------------------------------------------
install(TARGETS spoold spoolctl RUNTIME DESTINATION sbin)
install(FILES "${_pkg_out}/links/sbin/sendmail" DESTINATION sbin)
install(FILES "${_pkg_out}/links/lib/sendmail" DESTINATION lib)
install(FILES "${_pkg_out}/links/bin/mailq" "${_pkg_out}/links/bin/newaliases" DESTINATION bin)
# The config is never overwritten by `cmake --install` (an admin's edits survive); the package
# stages into an empty tree, so it always ships it, and dpkg's conffile handling takes over.
install(CODE "
  if(EXISTS \"\$ENV{DESTDIR}${SPOOLD_INSTALL_SYSCONFDIR}/spoold/spoold.yaml\")
    message(STATUS \"Keeping: \$ENV{DESTDIR}${SPOOLD_INSTALL_SYSCONFDIR}/spoold/spoold.yaml\")
  else()
    file(INSTALL DESTINATION \"${SPOOLD_INSTALL_SYSCONFDIR}/spoold\" TYPE FILE
         PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ FILES \"${_pkg_src}/spoold.yaml\")
  endif()")
install(FILES "${PROJECT_SOURCE_DIR}/systemd/spoold.service" DESTINATION "${SPOOLD_INSTALL_UNITDIR}")
install(FILES "${PROJECT_SOURCE_DIR}/systemd/spoold.sysusers" DESTINATION lib/sysusers.d RENAME spoold.conf)
install(FILES "${PROJECT_SOURCE_DIR}/systemd/spoold.tmpfiles" DESTINATION lib/tmpfiles.d RENAME spoold.conf)
foreach(page IN LISTS _pkg_man8)
  install(FILES "${_pkg_out}/man/${page}.gz" DESTINATION share/man/man8)
endforeach()
install(FILES "${_pkg_out}/links/man8/sendmail.8.gz" "${_pkg_out}/links/man8/mailq.8.gz"
              "${_pkg_out}/links/man8/newaliases.8.gz" DESTINATION share/man/man8)
install(FILES "${_pkg_out}/man/spoold.yaml.5.gz" DESTINATION share/man/man5)
install(FILES "${_pkg_src}/debian/copyright" "${_pkg_out}/doc/changelog.gz" DESTINATION "${_pkg_doc}")
foreach(doc IN LISTS _pkg_docs)
  get_filename_component(name "${doc}" NAME)
  install(FILES "${_pkg_out}/doc/${name}.gz" DESTINATION "${_pkg_doc}")
endforeach()

# --- CPack: one binary package, spoold ----------------------------------------------------------
set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "spoold")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_CONTACT "${SPOOLD_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "spooling mail transfer agent with retry tiers and pooled SMTP")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${SPOOLD_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_SECTION "mail")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
# CPack puts the summary on the first line itself; this is the extended description.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "spoold keeps every message on disk until it is delivered, bounced or expired.
Programs hand it mail through sendmail or by dropping a file into its spool.
It resolves MX records itself and delivers over pooled, pipelined SMTP
connections with STARTTLS and AUTH, directly or through relay groups; failed
attempts move to slower retry tiers, permanent failures bounce with an
RFC 3464 report. Several hosts may share one spool directory over NFS.")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_PROVIDES "mail-transport-agent")
set(CPACK_DEBIAN_PACKAGE_CONFLICTS "mail-transport-agent")
set(CPACK_DEBIAN_PACKAGE_REPLACES "mail-transport-agent")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${_pkg_src}/debian/conffiles;${_pkg_src}/debian/postinst;${_pkg_src}/debian/prerm;${_pkg_src}/debian/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)

# --- the packaging test (tests/packaging/) --------------------------------------------------------
# Not in sanitizer builds: the package is made from a release build, and an ASan binary is not one.
# tests/CMakeLists.txt may add the folder itself one day; it then sets SPOOLD_PACKAGING_TESTS.
get_property(_pkg_tests_added GLOBAL PROPERTY SPOOLD_PACKAGING_TESTS)
if(SPOOLD_TESTS AND NOT SPOOLD_SANITIZE AND NOT _pkg_tests_added
   AND EXISTS "${PROJECT_SOURCE_DIR}/tests/packaging/CMakeLists.txt")
  add_subdirectory("${PROJECT_SOURCE_DIR}/tests/packaging" "${PROJECT_BINARY_DIR}/tests/packaging")
endif()
