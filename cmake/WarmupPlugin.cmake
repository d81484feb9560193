# warmup_add_plugin_library(<name> SOURCES ... [LIBRARIES ...] [OUTPUT_DIRECTORY dir])
#
# Builds one plugin shared library `libwarmup_<name>.so` against the SDK (warmup::sdk), with
# hidden visibility so only the manifest symbol is exported. A library may hold plugins of any
# kinds (a domain: its task, rewards and teachers). The target is `warmup_<name>`. Used by the
# in-tree plugins and installed with the SDK for out-of-tree ones (find_package(warmup) then
# this function).
function(warmup_add_plugin_library name)
  cmake_parse_arguments(ARG "" "OUTPUT_DIRECTORY" "SOURCES;LIBRARIES" ${ARGN})
  set(target warmup_${name})
  add_library(${target} MODULE ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE warmup::sdk ${ARG_LIBRARIES})
  target_compile_features(${target} PRIVATE cxx_std_20)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  set_target_properties(${target} PROPERTIES
    PREFIX "lib"
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  if(ARG_OUTPUT_DIRECTORY)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${ARG_OUTPUT_DIRECTORY})
  elseif(WARMUP_PLUGIN_OUTPUT_DIR)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${WARMUP_PLUGIN_OUTPUT_DIR})
    # in-tree plugins the warmup executable finds by default: part of the `warmup_runtime` target
    set_property(GLOBAL APPEND PROPERTY WARMUP_RUNTIME_TARGETS ${target})
  endif()
  if(WARMUP_PLUGIN_INSTALL_DIR)
    install(TARGETS ${target} LIBRARY DESTINATION ${WARMUP_PLUGIN_INSTALL_DIR})
  endif()
endfunction()

# warmup_add_plugin(<kind> <name> SOURCES ... [LIBRARIES ...] [OUTPUT_DIRECTORY dir])
#
# One plugin of one kind: `libwarmup_<kind>_<name>.so`, target `warmup_<kind>_<name>`.
function(warmup_add_plugin kind name)
  set(allowed task reward algorithm teacher)
  if(NOT kind IN_LIST allowed)
    message(FATAL_ERROR "warmup_add_plugin: kind must be one of ${allowed}, got '${kind}'")
  endif()
  warmup_add_plugin_library(${kind}_${name} ${ARGN})
endfunction()

# warmup_add_eval_preset(<domain> <file> [OUTPUT_DIRECTORY dir])
#
# Puts a domain's evaluation preset (framework/src/plugins/eval_presets.h) beside its plugin
# library as `<domain>.eval.toml`, where `warmup eval --tasks` and `warmup score --task` find it
# through the plugin directories, and installs it with the plugins.
function(warmup_add_eval_preset domain file)
  cmake_parse_arguments(ARG "" "OUTPUT_DIRECTORY" "" ${ARGN})
  if(ARG_OUTPUT_DIRECTORY)
    set(dir ${ARG_OUTPUT_DIRECTORY})
  elseif(WARMUP_PLUGIN_OUTPUT_DIR)
    set(dir ${WARMUP_PLUGIN_OUTPUT_DIR})
  elseif(CMAKE_LIBRARY_OUTPUT_DIRECTORY)
    set(dir ${CMAKE_LIBRARY_OUTPUT_DIRECTORY})
  else()
    set(dir ${CMAKE_CURRENT_BINARY_DIR})
  endif()
  configure_file(${file} ${dir}/${domain}.eval.toml COPYONLY)
  if(WARMUP_PLUGIN_INSTALL_DIR)
    install(FILES ${dir}/${domain}.eval.toml DESTINATION ${WARMUP_PLUGIN_INSTALL_DIR})
  endif()
endfunction()
