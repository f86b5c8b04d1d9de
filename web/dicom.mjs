// DICOM in the browser: dicom-parser reads the file, this module picks out what decoding needs,
// and the shared C++ core does the pixel math (loupe::dicom_pixels_from_json + dicom_to_image,
// the same code natively), RLE, JPEG baseline and JPEG 2000 decoding included.
//
//   import { loadDicomParser, loadDicomCodecs, isDicom, parseDicom } from './dicom.mjs';
//   await loadDicomParser();                       // once: loads ./dicomParser.min.js (classic script)
//   const codecs = await loadDicomCodecs();        // once: JPEG lossless and JPEG-LS decoders
//   if (isDicom(bytes)) {
//     const { attributes, pixels } = parseDicom(bytes, { codecs, frame: 0 });  // throws Error
//     // hand JSON.stringify(attributes) and the bytes of `pixels` to the C++ side
//   }
//
// `attributes` has the keys of loupe::dicom_pixels_to_json() and nothing patient-identifying:
// the patient's name, IDs, dates, institution, UIDs... are never read here. If the user asks to
// see them, readIdentifyingAttributes() reads them separately, for display only.
// `pixels` is the pixel data of one frame (`frame`, 0-based, the first by default; `attributes.
// frames` says how many there are): native samples as stored (the file's byte order), or the
// frame's fragments for RLE, JPEG baseline and JPEG 2000, which the core decodes. JPEG lossless
// (process 14) and JPEG-LS are decoded here, with npm decoders (Debian packages no library for
// them that could be built for wasm: DCMTK decodes them natively), into little-endian samples
// (attributes.pixel_syntax explicit VR little endian), as the native reader hands over DCMTK's
// output; tests/parity checks that both give the same samples.

const DEFLATED = '1.2.840.10008.1.2.1.99';
const EXPLICIT_LITTLE = '1.2.840.10008.1.2.1';
const JPEG_LOSSLESS = ['1.2.840.10008.1.2.4.57', '1.2.840.10008.1.2.4.70'];
const JPEG_LS = ['1.2.840.10008.1.2.4.80', '1.2.840.10008.1.2.4.81'];

// dicom-parser's browser build is a UMD script: loaded as a classic <script> it defines
// window.dicomParser (imported as a module it would not). Resolves with the parser.
export function loadDicomParser(src = './dicomParser.min.js', doc = globalThis.document) {
  if (globalThis.dicomParser) return Promise.resolve(globalThis.dicomParser);
  return new Promise((resolve, reject) => {
    const script = doc.createElement('script');
    script.src = src;
    script.onload = () => (globalThis.dicomParser ? resolve(globalThis.dicomParser)
                                                 : reject(new Error(`${src} did not define dicomParser`)));
    script.onerror = () => reject(new Error(`could not load the DICOM parser (${src})`));
    doc.head.appendChild(script);
  });
}

// The decoders of the syntaxes the core does not decode: jpeg-lossless-decoder-js (an ES module)
// and CharLS built for wasm (@cornerstonejs/codec-charls, a classic script defining CharLSWASM,
// whose .wasm file sits beside it). Resolves with { JpegLosslessDecoder, charls }.
let codecsPromise = null;
export function loadDicomCodecs(base = import.meta.url, doc = globalThis.document) {
  codecsPromise ??= (async () => {
    const { Decoder } = await import(new URL('./lossless.js', base).href);
    if (!globalThis.CharLSWASM) {
      await new Promise((resolve, reject) => {
        const script = doc.createElement('script');
        script.src = new URL('./charlswasm_decode.js', base).href;
        script.onload = resolve;
        script.onerror = () => reject(new Error(`could not load the JPEG-LS decoder (${script.src})`));
        doc.head.appendChild(script);
      });
    }
    const charls = await globalThis.CharLSWASM({ locateFile: (file) => new URL(`./${file}`, base).href });
    return { JpegLosslessDecoder: Decoder, charls };
  })();
  codecsPromise.catch(() => { codecsPromise = null; });  // a later file may try again
  return codecsPromise;
}

function asBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('expected an ArrayBuffer or a typed array');
}

// A DICOM Part 10 file: "DICM" after the 128-byte preamble (same test as loupe::is_dicom).
export function isDicom(data) {
  const b = asBytes(data);
  return b.length >= 132 && b[128] === 0x44 && b[129] === 0x49 && b[130] === 0x43 && b[131] === 0x4d;
}

// dicom-parser throws strings, or {exception, dataSet} objects when it fails part-way.
function parserError(e) {
  const text = typeof e === 'string' ? e : e?.exception ?? e?.message ?? String(e);
  return new Error(`DICOM file could not be parsed (${String(text).replace(/^dicomParser[.:]\s*\w*:?\s*/, '')}): ` +
                   'truncated or damaged');
}

function parse(bytes, parser) {
  if (!parser) throw new Error('the DICOM parser is not loaded (call loadDicomParser() first)');
  if (!isDicom(bytes)) throw new Error("not a DICOM file: no 'DICM' marker at byte 128");
  let meta;
  try {
    meta = parser.readPart10Header(bytes);
  } catch (e) {
    throw parserError(e);
  }
  // Deflated data sets need an inflater dicom-parser does not bring to the browser.
  if ((meta.string('x00020010') ?? '').trim() === DEFLATED) {
    throw new Error(`deflated DICOM (${DEFLATED}) is not supported in the browser; convert the file to an ` +
                    'uncompressed transfer syntax first (for example `gdcmconv --raw in.dcm out.dcm`)');
  }
  try {
    return parser.parseDicom(bytes);
  } catch (e) {
    throw parserError(e);
  }
}

const text = (ds, tag) => (ds.string(tag) ?? '').trim();
const uint16 = (ds, tag, fallback, index = 0) => ds.uint16(tag, index) ?? fallback;
function number(ds, tag) {
  const v = ds.floatString(tag, 0);
  return Number.isFinite(v) ? v : null;
}

// The attributes, exactly as the native reader (shared/src/dicom_reader.cpp) fills them.
function attributesOf(ds) {
  const frames = ds.intString('x00280008');
  let slope = number(ds, 'x00281053') ?? 1;
  if (slope === 0) slope = 1;  // a zero slope is a writer's mistake, not a black image
  const attributes = {
    rows: uint16(ds, 'x00280010', 0),
    columns: uint16(ds, 'x00280011', 0),
    samples_per_pixel: uint16(ds, 'x00280002', 1),
    bits_allocated: uint16(ds, 'x00280100', 0),
    bits_stored: uint16(ds, 'x00280101', 0),
    high_bit: uint16(ds, 'x00280102', -1),
    pixel_representation: uint16(ds, 'x00280103', 0),
    planar_configuration: uint16(ds, 'x00280006', 0),
    frames: Number.isInteger(frames) ? frames : 1,
    frame: 0,
    photometric: text(ds, 'x00280004'),
    transfer_syntax: text(ds, 'x00020010'),
    slope,
    intercept: number(ds, 'x00281052') ?? 0,
    window_center: number(ds, 'x00281050'),
    window_width: number(ds, 'x00281051'),
    voi_lut_function: text(ds, 'x00281056'),
    voi_lut: [],
    voi_lut_first: 0,
    voi_lut_bits: 16,
    modality: text(ds, 'x00080060'),
    body_part: text(ds, 'x00180015'),
    sop_class_uid: text(ds, 'x00080016'),
    view_position: text(ds, 'x00185101'),
    has_pixel_data: ds.elements.x7fe00010 !== undefined,
  };
  const voi = ds.elements.x00283010?.items?.[0]?.dataSet;
  const lutData = voi?.elements.x00283006;
  if (voi && lutData && lutData.length >= 2 && voi.elements.x00283002) {
    const entries = voi.uint16('x00283002', 0);
    const first = voi.uint16('x00283002', 1);
    attributes.voi_lut_first = attributes.pixel_representation === 1 && first >= 0x8000 ? first - 0x10000 : first;
    attributes.voi_lut_bits = voi.uint16('x00283002', 2) ?? 16;
    const count = Math.min(entries === 0 ? 65536 : entries, lutData.length >> 1);
    for (let i = 0; i < count; ++i) attributes.voi_lut.push(voi.uint16('x00283006', i));
  }
  if (!attributes.has_pixel_data && (ds.elements.x7fe00008 || ds.elements.x7fe00009)) {
    throw new Error('DICOM with floating-point pixel data (a parametric map) is not supported; integer pixel data is');
  }
  return attributes;
}

const corrupt = (what) => new Error(`DICOM file is corrupt: ${what}`);

// The fragments [first, last) of one frame of encapsulated pixel data: the rule of
// loupe::dicom_frame_fragments (shared/src/dicom.cpp), which the native reader follows.
export function frameFragments(offsets, sizes, frames, frame, startsCodestream) {
  const n = sizes.length;
  const which = `frame ${frame + 1} of ${frames}`;
  if (n === 0) throw corrupt('encapsulated pixel data has no fragments');
  if (frames === 1) return [0, n];
  if (offsets.length === frames) {
    const itemStart = [0];
    for (let i = 0; i < n; ++i) itemStart.push(itemStart[i] + 8 + sizes[i]);
    const indexOf = (offset) => {
      const i = itemStart.indexOf(offset);
      if (i < 0 || i === n) throw corrupt(`${which}: the Basic Offset Table's entry ${offset} is not the start of a fragment`);
      return i;
    };
    const first = indexOf(offsets[frame]);
    const last = frame + 1 < offsets.length ? indexOf(offsets[frame + 1]) : n;
    if (first >= last) throw corrupt(`${which}: the Basic Offset Table's entries are not increasing`);
    return [first, last];
  }
  if (offsets.length > 0) {
    throw corrupt(`the Basic Offset Table has ${offsets.length} entries for ${frames} frames`);
  }
  if (n === frames) return [frame, frame + 1];
  const starts = [];
  for (let i = 0; i < n; ++i) if (startsCodestream[i]) starts.push(i);
  if (starts.length !== frames || starts[0] !== 0) {
    throw corrupt(`${which} cannot be found: ${n} fragments, no Basic Offset Table, and ${starts.length} of them ` +
                  'start a codestream');
  }
  return [starts[frame], frame + 1 < starts.length ? starts[frame + 1] : n];
}

function fragmentBytes(ds, fragment) {
  return new Uint8Array(ds.byteArray.buffer, ds.byteArray.byteOffset + fragment.position, fragment.length);
}

function concat(parts) {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

// Decoded samples (Uint8Array or Uint16Array, one value per sample) -> little-endian bytes in
// Bits Allocated, each value masked to Bits Stored and placed at High Bit, as stored
// uncompressed data (and DCMTK's decompressed output) holds them.
function nativeSamples(values, a) {
  const stored = a.bits_stored > 0 ? a.bits_stored : a.bits_allocated;
  const shift = (a.high_bit >= 0 ? a.high_bit : stored - 1) + 1 - stored;
  const mask = stored >= 32 ? 0xffffffff : (2 ** stored) - 1;
  const bytes = a.bits_allocated >> 3;
  const out = new Uint8Array(values.length * bytes);
  for (let i = 0; i < values.length; ++i) {
    const v = ((values[i] & mask) << shift) >>> 0;
    out[i * bytes] = v & 0xff;
    if (bytes === 2) out[i * bytes + 1] = (v >> 8) & 0xff;
  }
  return out;
}

function decodeJpegLossless(frame, a, codecs) {
  let values;
  try {
    const decoder = new codecs.JpegLosslessDecoder();
    values = decoder.decode(frame.buffer, frame.byteOffset, frame.byteLength);
  } catch (e) {
    throw corrupt(`JPEG lossless frame could not be decoded (${e?.message ?? e})`);
  }
  const expected = a.rows * a.columns * a.samples_per_pixel;
  if (!values || values.length !== expected) {
    throw corrupt(`JPEG lossless frame decodes to ${values?.length ?? 0} samples; the DICOM header's ` +
                  `${a.columns}x${a.rows} pixels of ${a.samples_per_pixel} sample(s) need ${expected}`);
  }
  return { bytes: nativeSamples(values, a), planar: 0 };
}

function decodeJpegLs(frame, a, codecs) {
  const decoder = new codecs.charls.JpegLSDecoder();
  try {
    decoder.getEncodedBuffer(frame.length).set(frame);
    try {
      decoder.decode();
    } catch (e) {
      // CharLS throws a C++ exception: a pointer, not a message.
      throw corrupt(`JPEG-LS frame could not be decoded (${typeof e === 'number' ? 'damaged codestream' : e?.message ?? e})`);
    }
    const info = decoder.getFrameInfo();
    if (info.width !== a.columns || info.height !== a.rows || info.componentCount !== a.samples_per_pixel) {
      throw corrupt(`JPEG-LS frame is ${info.width}x${info.height} pixels of ${info.componentCount} sample(s) but ` +
                    `the DICOM header says ${a.columns}x${a.rows} of ${a.samples_per_pixel}`);
    }
    const decoded = decoder.getDecodedBuffer();
    const values = info.bitsPerSample > 8
      ? new Uint16Array(decoded.slice().buffer, 0, decoded.length >> 1)
      : decoded.slice();
    // CharLS returns the components one after the other when the stream is not interleaved.
    const planar = a.samples_per_pixel > 1 && decoder.getInterleaveMode() === 0 ? 1 : 0;
    return { bytes: nativeSamples(values, a), planar };
  } finally {
    decoder.delete();
  }
}

// The bytes of frame a.frame (see the top of this file); for JPEG lossless and JPEG-LS, decoded.
function pixelsOf(ds, a, parser, codecs) {
  const element = ds.elements.x7fe00010;
  if (!element || a.frame < 0 || a.frame >= a.frames) return new Uint8Array(0);  // the core says why
  if (element.encapsulatedPixelData) {
    const fragments = element.fragments ?? [];
    if (fragments.length === 0) return new Uint8Array(0);
    const offsets = element.basicOffsetTable ?? [];
    const starts = fragments.map((f) => {
      const b = fragmentBytes(ds, f);
      return b.length >= 2 && b[0] === 0xff && (b[1] === 0xd8 || b[1] === 0x4f);
    });
    const [first, last] = frameFragments(offsets, fragments.map((f) => f.length), a.frames, a.frame, starts);
    const frame = concat(fragments.slice(first, last).map((f) => fragmentBytes(ds, f)));
    const decoder = JPEG_LOSSLESS.includes(a.transfer_syntax) ? decodeJpegLossless
      : JPEG_LS.includes(a.transfer_syntax) ? decodeJpegLs : null;
    if (!decoder) return frame;
    if (!codecs) throw new Error('the JPEG lossless and JPEG-LS decoders are not loaded (call loadDicomCodecs() first)');
    const { bytes, planar } = decoder(frame, a, codecs);
    a.pixel_syntax = EXPLICIT_LITTLE;
    if (a.samples_per_pixel > 1) a.planar_configuration = planar;
    return bytes;
  }
  const perPixel = a.photometric === 'YBR_FULL_422' ? 2 : a.samples_per_pixel * (a.bits_allocated >> 3);
  const frameBytes = a.rows * a.columns * perPixel;
  const start = frameBytes * a.frame;
  const length = Math.min(element.length - start, frameBytes, ds.byteArray.length - element.dataOffset - start);
  return new Uint8Array(ds.byteArray.buffer, ds.byteArray.byteOffset + element.dataOffset + start, Math.max(0, length));
}

// Parses a DICOM file: { attributes, pixels } for loupe::dicom_pixels_from_json, with the pixel
// data of frame `frame` (0-based). `codecs`: what loadDicomCodecs() gives, needed for JPEG
// lossless and JPEG-LS files only. Throws Error.
export function parseDicom(data, { dicomParser = globalThis.dicomParser, codecs = null, frame = 0 } = {}) {
  const bytes = asBytes(data);
  const ds = parse(bytes, dicomParser);
  const attributes = attributesOf(ds);
  attributes.frame = frame;
  let pixels;
  try {
    pixels = pixelsOf(ds, attributes, dicomParser, codecs);
  } catch (e) {
    if (e instanceof Error && /^(DICOM file is corrupt|the JPEG lossless)/.test(e.message)) throw e;
    throw parserError(e);
  }
  return { attributes, pixels };
}

// Whether parseDicom needs the decoders of loadDicomCodecs() for this file (JPEG lossless, JPEG-LS).
export function needsDicomCodecs(attributes) {
  return JPEG_LOSSLESS.includes(attributes.transfer_syntax) || JPEG_LS.includes(attributes.transfer_syntax);
}

// The transfer syntax UID of a DICOM file's meta information ('' when there is none), to know
// whether parseDicom will need loadDicomCodecs() before parsing the whole file.
export function transferSyntaxOf(data, { dicomParser = globalThis.dicomParser } = {}) {
  try {
    return (dicomParser.readPart10Header(asBytes(data)).string('x00020010') ?? '').trim();
  } catch {
    return '';  // parseDicom names the problem
  }
}

// Patient and study attributes, for display when the user explicitly asks. Never pass these to
// the core, a report or an export.
export function readIdentifyingAttributes(data, { dicomParser = globalThis.dicomParser } = {}) {
  const ds = parse(asBytes(data), dicomParser);
  return {
    patient_name: text(ds, 'x00100010'),
    patient_id: text(ds, 'x00100020'),
    patient_birth_date: text(ds, 'x00100030'),
    patient_sex: text(ds, 'x00100040'),
    study_date: text(ds, 'x00080020'),
    accession_number: text(ds, 'x00080050'),
    institution: text(ds, 'x00080080'),
    referring_physician: text(ds, 'x00080090'),
  };
}
