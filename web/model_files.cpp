#include "model_files.h"

#include <emscripten.h>

namespace {

// Module.modelFiles is the object app.mjs passed to createLoupe() (see model_files.js).
EM_JS(void, js_model_files_listen, (), {
  const models = Module["modelFiles"];
  if (!models) {
    Module["ccall"]("loupe_on_shipped_models", null, ["string", "string"],
                    ["", "no modelFiles object was passed to createLoupe()"]);
    return;
  }
  models.listen((model) => {
    let pointer = 0;
    let size = 0;
    let error = model.error || "";
    if (model.bytes) {
      size = model.bytes.length;
      pointer = _malloc(Math.max(1, size));
      if (pointer) HEAPU8.set(model.bytes, pointer);  // HEAPU8 after _malloc: growth replaces it
      else error = "out of memory reading " + size + " bytes";
    }
    Module["ccall"]("loupe_on_model_file", null, ["number", "number", "string", "string", "string"],
                    [pointer, pointer ? size : 0, model.name, model.source, pointer ? "" : error]);
  });
  models.manifest().then(
      (manifest) => {
        Module["ccall"]("loupe_on_shipped_models", null, ["string", "string"], [JSON.stringify(manifest), ""]);
        if (manifest["default"]) models.openShipped(manifest["default"]);
      },
      (error) => Module["ccall"]("loupe_on_shipped_models", null, ["string", "string"],
                                 ["", String(error && error.message || error)]));
});

EM_JS(void, js_model_files_open_picker, (), {
  const models = Module["modelFiles"];
  if (models) models.openPicker();
});

EM_JS(void, js_model_files_open_shipped, (const char* file), {
  const models = Module["modelFiles"];
  if (models) models.openShipped(UTF8ToString(file));
});

}  // namespace

namespace loupe_web {

void model_files_listen() { js_model_files_listen(); }

void model_files_open_picker() { js_model_files_open_picker(); }

void model_files_open_shipped(const std::string& file) { js_model_files_open_shipped(file.c_str()); }

}  // namespace loupe_web
