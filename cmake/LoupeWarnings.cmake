# Warnings for Loupe's own targets only (third-party code keeps its own flags).
function(loupe_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wconversion
                         -Wno-sign-conversion -Wnon-virtual-dtor)
  if(LOUPE_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# ASan+UBSan for a native target and everything that links it (LOUPE_SANITIZE=ON).
function(loupe_enable_sanitizers target)
  if(LOUPE_SANITIZE AND NOT EMSCRIPTEN)
    target_compile_options(${target} PUBLIC -fsanitize=address,undefined -fno-omit-frame-pointer
                           -fno-sanitize-recover=undefined)
    target_link_options(${target} PUBLIC -fsanitize=address,undefined)
  endif()
endfunction()
