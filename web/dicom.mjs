// DICOM in the browser: dicom-parser reads the file, this module picks out what decoding needs,
// and the shared C++ core does the pixel math (loupe::dicom_pixels_from_json + dicom_to_image,
// the same code natively). Nothing here decodes pixels, so browser and native cannot drift.
//
//   import { loadDicomParser, isDicom, parseDicom } from './dicom.mjs';
//   await loadDicomParser();                       // once: loads ./dicomParser.min.js (classic script)
//   if (isDicom(bytes)) {
//     const { attributes, pixels } = parseDicom(bytes);   // throws Error with a clear message
//     // hand JSON.stringify(attributes) and the bytes of `pixels` to the C++ side
//   }
//
// `attributes` has the keys of loupe::dicom_pixels_to_json() and nothing patient-identifying:
// the patient's name, IDs, dates, institution, UIDs... are never read here. If the user asks to
// see them, readIdentifyingAttributes() reads them separately, for display only.
// `pixels` is the first frame's pixel data as stored: native samples (the file's byte order), or
// all fragments of the frame for compressed syntaxes (RLE and JPEG baseline are decoded by the
// core; others are refused there with a message naming the syntax). Multi-frame files hand over
// no pixels: the core refuses them by their frame count.

const DEFLATED = '1.2.840.10008.1.2.1.99';

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

// The first frame's bytes (see the top of this file).
function pixelsOf(ds, a, parser) {
  const element = ds.elements.x7fe00010;
  if (!element || a.frames > 1) return new Uint8Array(0);
  if (element.encapsulatedPixelData) {
    if (!element.fragments || element.fragments.length === 0) return new Uint8Array(0);
    return parser.readEncapsulatedPixelDataFromFragments(ds, element, 0, element.fragments.length);
  }
  const perPixel = a.photometric === 'YBR_FULL_422' ? 2 : a.samples_per_pixel * (a.bits_allocated >> 3);
  const frameBytes = a.rows * a.columns * perPixel;
  const length = Math.min(element.length, frameBytes, ds.byteArray.length - element.dataOffset);
  return new Uint8Array(ds.byteArray.buffer, ds.byteArray.byteOffset + element.dataOffset, Math.max(0, length));
}

// Parses a DICOM file: { attributes, pixels } for loupe::dicom_pixels_from_json. Throws Error.
export function parseDicom(data, { dicomParser = globalThis.dicomParser } = {}) {
  const bytes = asBytes(data);
  const ds = parse(bytes, dicomParser);
  const attributes = attributesOf(ds);
  let pixels;
  try {
    pixels = pixelsOf(ds, attributes, dicomParser);
  } catch (e) {
    throw parserError(e);
  }
  return { attributes, pixels };
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
