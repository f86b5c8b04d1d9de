// The page's typeface: DejaVu Sans (Debian's fonts-dejavu-core), embedded into loupe.wasm at build
// time from the installed package (web/CMakeLists.txt; never committed). Readable at small sizes,
// and it has every letter English and Bahasa Indonesia use. main.cpp rasterises it at the user's
// text size times devicePixelRatio.
#pragma once

#include <cstddef>

namespace loupe_web {

// The TTF file's bytes (generated source: build/web/web/ui_font.cpp).
const unsigned char* ui_font_data();
size_t ui_font_size();

// The characters rasterised into the atlas (pairs of first, last; 0-terminated): Latin with its
// accents, dashes, quotes, the ellipsis, arrows and a few signs. tests/web/test_i18n.cpp checks
// that every character of the catalogues is in here.
inline constexpr unsigned short kUiGlyphRanges[] = {  // ImWchar (16-bit)
    0x0020, 0x007E,  // Basic Latin
    0x00A0, 0x017F,  // Latin-1 Supplement, Latin Extended-A
    0x2010, 0x2027,  // dashes, quotes, bullet, ellipsis
    0x2190, 0x2193,  // arrows
    0x2212, 0x2212,  // minus
    0x2264, 0x2265,  // less/greater than or equal
    0,
};

}  // namespace loupe_web
