// C++ face of image_files.js: the user's local files (file picker, folder picker, drag-and-drop).
//
// JS keeps only File handles (no bytes). It tells the app about each new file through
// loupe_on_image_file_added; the app asks for one file's bytes at a time with
// image_files_read(), and JS answers between two frames with loupe_on_image_file_read, passing a
// malloc'd copy in the wasm heap that the callee owns (and frees). Nothing is ever uploaded.
#pragma once

namespace loupe_web {

// Starts forwarding the files image_files.js collects (including any picked before the app ran).
void image_files_listen();

// Opens the browser's file picker (several files) or folder picker.
void image_files_open_picker(bool folder);

// Reads file `file_index` into the heap; answered once by loupe_on_image_file_read(request, ...).
void image_files_read(int request, int file_index, int frame);

}  // namespace loupe_web

// Defined by the app. Strings live only for the duration of the call.
extern "C" void loupe_on_image_file_added(int file_index, const char* name, const char* path, double size);
// On success `bytes` (malloc'd, owned by the callee) holds `size` bytes; on failure it is null and
// `error` says why. For a DICOM file, JS has parsed it (dicom.mjs): `dicom_attributes` is the JSON
// for loupe::dicom_pixels_from_json() and `bytes` the pixel data; otherwise it is empty and
// `bytes` is the file.
extern "C" void loupe_on_image_file_read(int request, unsigned char* bytes, int size, const char* dicom_attributes,
                                         const char* error);
