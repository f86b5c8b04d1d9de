#include "image_files.h"

#include <emscripten.h>

namespace {

// Module.imageFiles is the object app.mjs passed to createLoupe() (see image_files.js).
EM_JS(void, js_image_files_listen, (), {
  const files = Module["imageFiles"];
  if (!files) {
    console.warn("Loupe: no imageFiles object was passed to createLoupe(); opening images is off");
    return;
  }
  files.listen((index, name, path, size) => Module["ccall"](
      "loupe_on_image_file_added", null, ["number", "string", "string", "number"], [index, name, path, size]));
});

EM_JS(void, js_image_files_open_picker, (int folder), {
  const files = Module["imageFiles"];
  if (files) files.openPicker(folder !== 0);
});

EM_JS(void, js_image_files_read, (int request, int index, int frame), {
  const report = (pointer, size, dicom, error) => Module["ccall"](
      "loupe_on_image_file_read", null, ["number", "number", "number", "string", "string"],
      [request, pointer, size, dicom, error]);
  const files = Module["imageFiles"];
  if (!files) {
    report(0, 0, "", "no imageFiles object");
    return;
  }
  files.readForDecoding(index, frame).then((file) => {
    const bytes = file.bytes;
    const pointer = _malloc(Math.max(1, bytes.length));
    if (!pointer) {
      report(0, 0, "", "out of memory reading " + bytes.length + " bytes");
      return;
    }
    HEAPU8.set(bytes, pointer);  // HEAPU8 after _malloc: memory growth replaces the view
    report(pointer, bytes.length, file.dicom ? JSON.stringify(file.dicom) : "", "");
  }, (error) => report(0, 0, "", String(error && error.message || error)));
});

}  // namespace

namespace loupe_web {

void image_files_listen() { js_image_files_listen(); }

void image_files_open_picker(bool folder) { js_image_files_open_picker(folder ? 1 : 0); }

void image_files_read(int request, int file_index, int frame) { js_image_files_read(request, file_index, frame); }

}  // namespace loupe_web
