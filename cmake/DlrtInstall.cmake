# install(): the library, the public headers (plus the generated export
# header) and a CMake package, so that an outside project can do
#   find_package(dlrt) + target_link_libraries(app dlrt::dlrt)
include(CMakePackageConfigHelpers)

install(TARGETS dlrt EXPORT dlrtTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/dlrt DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_BINARY_DIR}/include/dlrt/export.hpp DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/dlrt)

set(_dlrt_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/dlrt)
install(EXPORT dlrtTargets NAMESPACE dlrt:: DESTINATION ${_dlrt_cmake_dir})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/dlrtConfig.cmake.in
  ${PROJECT_BINARY_DIR}/dlrtConfig.cmake INSTALL_DESTINATION ${_dlrt_cmake_dir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/dlrtConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/dlrtConfig.cmake ${PROJECT_BINARY_DIR}/dlrtConfigVersion.cmake
  DESTINATION ${_dlrt_cmake_dir})
