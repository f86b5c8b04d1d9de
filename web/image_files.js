// The user's local image files: a file picker (several files), a folder picker and drag-and-drop
// onto the page. Only File handles are kept here; bytes are read one file at a time when the app
// asks (read()), so a folder of thousands of images costs almost nothing until it is processed.
// Nothing is uploaded: files are read with the File API inside this tab.
//
// The two <input type=file> elements are in index.html (#open-files, #open-folder): hidden, and
// the app's "Open" buttons click them. This file knows nothing of the Emscripten module.

import { isDicom, loadDicomCodecs, loadDicomParser, needsDicomCodecs, parseDicom, transferSyntaxOf } from './dicom.mjs';

// Largest file read into memory at once. The decoder rejects images above 64 megapixels anyway;
// this stops a multi-gigabyte non-image from being read just to be rejected.
export const MAX_FILE_BYTES = 512 * 1024 * 1024;

const byPath = (a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);

// Hidden files of an opened folder (.DS_Store, anything under .git/) are not images the user
// meant: skipped, as `loupe predict FOLDER` skips them.
const visible = ({ path }) => !path.split('/').some((part) => part.startsWith('.'));

// A dropped FileSystemEntry, walked into [{ file, path }]. readEntries() returns at most 100
// entries per call, so it is called until it returns none.
async function collectEntry(entry, out) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    out.push({ file, path: entry.fullPath.replace(/^\//, '') });
  } else if (entry.isDirectory) {
    const reader = entry.createReader();
    for (;;) {
      const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
      if (batch.length === 0) break;
      for (const child of batch) await collectEntry(child, out);
    }
  }
}

// onModelFile(file): a dropped .onnx file, which is a model to open rather than an image.
export function createImageFiles({ document: doc = document, target = window, onModelFile = null } = {}) {
  const files = [];   // { file, path }, by index
  let listener = null;
  let announced = 0;  // files[0..announced) were passed to the listener

  function announce() {
    if (!listener) return;
    for (; announced < files.length; ++announced) {
      const { file, path } = files[announced];
      listener(announced, file.name, path, file.size);
    }
  }

  function add(entries) {
    files.push(...entries.sort(byPath));
    announce();
  }

  for (const [id, folder] of [['open-files', false], ['open-folder', true]]) {
    const input = doc.getElementById(id);
    if (!input) continue;
    input.addEventListener('change', () => {
      const picked = [...input.files].map((file) => ({ file, path: (folder && file.webkitRelativePath) || file.name }));
      add(folder ? picked.filter(visible) : picked);
      input.value = '';  // picking the same files again fires another change
    });
  }

  target.addEventListener('dragover', (event) => {
    event.preventDefault();
    if (event.dataTransfer) event.dataTransfer.dropEffect = 'copy';
  });
  target.addEventListener('drop', (event) => {
    event.preventDefault();
    // The entries must be taken now: the DataTransfer is emptied once this handler returns.
    const items = [...(event.dataTransfer?.items ?? [])];
    const entries = items.map((item) => item.webkitGetAsEntry?.()).filter(Boolean);
    const plain = entries.length ? [] : [...(event.dataTransfer?.files ?? [])];
    (async () => {
      const out = plain.map((file) => ({ file, path: file.name }));
      for (const entry of entries) await collectEntry(entry, out);
      const isModel = ({ path }) => onModelFile && /\.onnx$/i.test(path);
      for (const { file } of out.filter(isModel)) onModelFile(file);
      add(out.filter((entry) => !isModel(entry) && (entry.path === entry.file.name || visible(entry))));
    })().catch((error) => console.warn(`Loupe: could not read the dropped items: ${error.message}`));
  });

  const api = {
    // listener(index, name, path, size) for every file, those added before listen() first.
    listen(callback) {
      listener = callback;
      announce();
    },
    openPicker(folder) {
      doc.getElementById(folder ? 'open-folder' : 'open-files')?.click();
    },
    // Resolves to the file's bytes (an ArrayBuffer).
    async read(index) {
      const entry = files[index];
      if (!entry) throw new Error(`no file #${index}`);
      if (entry.file.size > MAX_FILE_BYTES) {
        throw new Error(`file too large (${entry.file.size} bytes; at most ${MAX_FILE_BYTES} are read)`);
      }
      return entry.file.arrayBuffer();
    },
    // What the app decodes: { bytes } for an image file, or { dicom: attributes, bytes: pixel data }
    // for a DICOM file (with or without extension), parsed here by dicom-parser (dicom.mjs) without
    // any patient-identifying attribute; the shared C++ core does the pixel math. `frame`: which
    // frame of a multi-frame file (0-based; attributes.frames says how many). Rejects with a
    // message naming the problem (a damaged DICOM file, say).
    async readForDecoding(index, frame = 0) {
      const bytes = new Uint8Array(await api.read(index));
      if (!isDicom(bytes)) return { bytes };
      await loadDicomParser(new URL('./dicomParser.min.js', import.meta.url).href);
      // JPEG lossless and JPEG-LS frames are decoded in dicom.mjs: its decoders load on first use.
      const codecs = needsDicomCodecs({ transfer_syntax: transferSyntaxOf(bytes) }) ? await loadDicomCodecs() : null;
      const { attributes, pixels } = parseDicom(bytes, { codecs, frame });
      return { dicom: attributes, bytes: pixels };
    },
    get count() { return files.length; },
  };
  return api;
}
