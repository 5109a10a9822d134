// sklambda on the device: a packaged model's edge graph scored by onnxruntime, in a browser
// (onnxruntime-web) or in Node (onnxruntime-node), with the API's validation.
//
// The same rules and the same reason texts as the API (src/sklambda/schema.py): unknown and
// missing features, wrong types, NaN and infinity, numbers out of range, unseen categories
// (scored with a note, or refused), numbers outside the training range (a note). The same
// prediction objects: {label, probabilities: {class: p}} for a classifier, {value} for a
// regressor. Values are what JSON gives: null is missing; a property set to undefined is
// absent, as JSON.stringify would leave it out.
//
//   import * as ort from "onnxruntime-web";          // or "onnxruntime-node"
//   import { createModel } from "./sklambda-edge.js";
//   const model = await createModel(ort, manifest, graphBytes);
//   const answer = await model.predict([{island: "Biscoe", ...}]);
//   // {model: {name, version}, predictions: [{label, probabilities}], notes: []}
//
// predict() is all or nothing, as POST /predict is: any invalid instance throws InvalidInput
// listing every reason ({path, reason}). score() scores the valid instances and lists the
// others' reasons, as the batch function does.

export const INVALID_INSTANCES = "some instances do not match the model's input schema";
export const INVALID_REQUEST = "the request does not match the API";
export const OUT_OF_RANGE = "number out of range";
export const NOT_UNICODE = "not valid Unicode text (a lone surrogate)";
export const NO_FINITE_PREDICTION = "the model gave no finite prediction for this row";
export const UNSEEN_CATEGORY = "unseen_category";
export const OUTSIDE_TRAINING_RANGE = "outside_training_range";

const MAX_ECHO = 40; // longest client value (or unknown key) echoed in a message
const INT64_LIMIT = 2 ** 63; // integers from -2**63 to below 2**63 are int64
const NONPRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]/u;

/** Invalid instances (or a request that is no list of instances), with every reason. */
export class InvalidInput extends Error {
  constructor(message, errors) {
    super(message);
    this.name = "InvalidInput";
    this.errors = errors; // [{path, reason}]
  }
}

/** The model's bundle does not hold what the module needs (a tampered or foreign file). */
export class BundleError extends Error {
  constructor(message) {
    super(message);
    this.name = "BundleError";
  }
}

// --- the texts of messages, as the API writes them -------------------------------------------

/** A JSON value's type for a message: "a string", "a number"... */
export function describe(value) {
  if (value === null) return "null";
  if (typeof value === "boolean") return "a boolean";
  if (typeof value === "number") return "a number";
  if (typeof value === "string") return "a string";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  return "an unsupported value";
}

/** `text` safe to echo: at most MAX_ECHO code points, lone surrogates replaced. */
export function cut(text) {
  const points = Array.from(text);
  const short = points.length <= MAX_ECHO ? text : points.slice(0, MAX_ECHO - 1).join("") + "…";
  return short.toWellFormed();
}

/** A string as Python's repr() writes it (the API's messages quote values that way). */
export function pyRepr(text) {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of text) {
    const code = ch.codePointAt(0);
    if (ch === "\\" || ch === quote) out += "\\" + ch;
    else if (ch === "\t") out += "\\t";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (code < 0x20 || code === 0x7f) out += "\\x" + hex(code, 2);
    else if (code < 0x7f) out += ch;
    else if (ch !== " " && NONPRINTABLE.test(ch)) {
      out += code < 0x100 ? "\\x" + hex(code, 2) : code < 0x10000 ? "\\u" + hex(code, 4) : "\\U" + hex(code, 8);
    } else out += ch;
  }
  return out + quote;
}

function hex(code, width) {
  return code.toString(16).padStart(width, "0");
}

/** A list of strings as Python writes it: ['a', 'b']. */
function pyList(texts) {
  return "[" + texts.map(pyRepr).join(", ") + "]";
}

/** Strings in code point order (Python's sort), not UTF-16 order. */
function byCodePoint(a, b) {
  const x = Array.from(a, (c) => c.codePointAt(0));
  const y = Array.from(b, (c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/** A double as Python's repr() writes it: 0.0001, 1e-05, 1e+16, 32.1, 5.0. */
export function pyFloat(x) {
  if (Number.isNaN(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const [mantissa, power] = x.toExponential().split("e"); // the shortest round-trip digits
  const exponent = Number(power);
  const digits = mantissa.replace("-", "").replace(".", "");
  const sign = x < 0 ? "-" : "";
  if (exponent < -4 || exponent >= 16) {
    const head = digits.length > 1 ? digits[0] + "." + digits.slice(1) : digits;
    const tail = String(Math.abs(exponent)).padStart(2, "0");
    return `${sign}${head}e${exponent < 0 ? "-" : "+"}${tail}`;
  }
  if (exponent < 0) return `${sign}0.${"0".repeat(-exponent - 1)}${digits}`;
  const whole = digits.slice(0, exponent + 1).padEnd(exponent + 1, "0");
  return `${sign}${whole}.${digits.slice(exponent + 1) || "0"}`;
}

/** A training bound as a note writes it: 6300 for a whole number, 32.1 otherwise. */
function bound(value) {
  return Number.isInteger(value) && Math.abs(value) < 1e15 ? String(value) : pyFloat(value);
}

/** The note of a number outside the feature's training range, or null (no range). */
export function rangeNote(feature) {
  if ((feature.kind !== "numeric" && feature.kind !== "integer") || (feature.min == null && feature.max == null)) {
    return null;
  }
  let where;
  if (feature.min != null && feature.max != null) {
    where = `outside the training range [${bound(feature.min)}, ${bound(feature.max)}]`;
  } else if (feature.min != null) where = `below the training minimum ${bound(feature.min)}`;
  else where = `above the training maximum ${bound(feature.max)}`;
  return `${where}; scored, but the model has not seen such values`;
}

export function path(row, field) {
  return field === null ? `instances[${row}]` : `instances[${row}].${field}`;
}

// --- validation -------------------------------------------------------------------------------

class Checker {
  constructor(feature, limit) {
    this.feature = feature;
    this.name = feature.name;
    this.limit = limit;
    this.allowed = new Set(feature.categories ?? []);
    this.sorted = [...this.allowed].sort(byCodePoint);
    const handling = feature.unseen_handling || "the pipeline's handling of unseen categories";
    this.unseenNote = `not seen in training; scored with ${handling}`;
    this.rangeNote = rangeNote(feature);
    this.low = feature.min == null ? -Infinity : feature.min;
    this.high = feature.max == null ? Infinity : feature.max;
    this.noteKind = feature.kind === "categorical" ? UNSEEN_CATEGORY : OUTSIDE_TRAINING_RANGE;
  }

  /** [clean value, error reason or null, note or null] */
  check(value) {
    const f = this.feature;
    if (value === null) return f.nullable ? [null, null, null] : [null, "must not be null", null];
    if (f.kind === "numeric") {
      if (typeof value !== "number") return [null, `expected a number, got ${describe(value)}`, null];
      if (Number.isFinite(value)) {
        if (Math.abs(value) >= this.limit) return [null, OUT_OF_RANGE, null];
        if (value < this.low || value > this.high) return [value, null, this.rangeNote];
        return [value, null, null];
      }
      if (Number.isNaN(value)) return f.nullable ? [null, null, null] : [null, "NaN is not allowed", null];
      return [null, "infinity is not allowed", null];
    }
    if (f.kind === "integer") {
      if (typeof value !== "number") return [null, `expected an integer, got ${describe(value)}`, null];
      if (Number.isNaN(value) && f.nullable) return [null, null, null];
      if (!Number.isInteger(value)) {
        return [null, "expected an integer, got a fractional or non-finite number", null];
      }
      if (value < -INT64_LIMIT || value >= INT64_LIMIT || Math.abs(value) >= this.limit) {
        return [null, OUT_OF_RANGE, null];
      }
      if (value < this.low || value > this.high) return [value, null, this.rangeNote];
      return [value, null, null];
    }
    if (f.kind === "categorical") {
      if (typeof value !== "string") return [null, `expected a string, got ${describe(value)}`, null];
      if (this.allowed.has(value)) return [value, null, null];
      if (!value.isWellFormed()) return [null, NOT_UNICODE, null];
      if (this.allowed.size === 0) return [value, null, null];
      if (f.unseen === "reject") {
        return [null, `unknown category ${pyRepr(cut(value))}; expected one of ${pyList(this.sorted)}`, null];
      }
      return [value, null, `category ${pyRepr(cut(value))} ${this.unseenNote}`];
    }
    if (typeof value !== "boolean") return [null, `expected a boolean, got ${describe(value)}`, null];
    return [value, null, null];
  }
}

function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The input schema of a bundle's manifest: validates instances as the API does. */
export class InputSchema {
  constructor(features, numberLimit = Infinity) {
    this.features = features;
    this.checkers = features.map((f) => new Checker(f, numberLimit));
    this.known = new Set(features.map((f) => f.name));
  }

  /**
   * Validate instances. Returns {rows, columns, errors, notes}: rows are the positions of the
   * valid instances, columns their clean values by feature, errors [{row, field, reason}] and
   * notes [{row, field, reason, kind}] in row order (within a row, in feature order).
   * unknown: "reject" (the API's rule) or "ignore".
   */
  validate(instances, { unknown = "reject", firstRow = 0 } = {}) {
    const columns = Object.fromEntries(this.features.map((f) => [f.name, []]));
    const rows = [];
    const errors = [];
    const notes = [];
    instances.forEach((record, index) => {
      const i = firstRow + index;
      if (!isObject(record)) {
        errors.push({ row: i, field: null, reason: `expected an object, got ${describe(record)}` });
        return;
      }
      const rowErrors = [];
      if (unknown === "reject") {
        for (const key of Object.keys(record)) {
          if (!this.known.has(key) && record[key] !== undefined) {
            rowErrors.push({ row: i, field: cut(key), reason: "unknown feature" });
          }
        }
      }
      const values = [];
      const rowNotes = [];
      for (const checker of this.checkers) {
        if (!Object.hasOwn(record, checker.name) || record[checker.name] === undefined) {
          rowErrors.push({ row: i, field: checker.name, reason: "missing feature" });
          continue;
        }
        const [clean, reason, note] = checker.check(record[checker.name]);
        if (reason !== null) rowErrors.push({ row: i, field: checker.name, reason });
        else if (note !== null) rowNotes.push({ row: i, field: checker.name, reason: note, kind: checker.noteKind });
        values.push(clean);
      }
      if (rowErrors.length) {
        errors.push(...rowErrors);
        return;
      }
      notes.push(...rowNotes);
      rows.push(i);
      this.features.forEach((f, j) => columns[f.name].push(values[j]));
    });
    return { rows, columns, errors, notes };
  }
}

// --- the model ------------------------------------------------------------------------------

function remark(item) {
  return { path: path(item.row, item.field), reason: item.reason };
}

async function sha256(bytes) {
  const digest = await globalThis.crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A packaged model on the device: its manifest, its input schema and an onnxruntime session. */
export class Model {
  constructor(ort, manifest, session) {
    const edge = manifest.edge;
    this.ort = ort;
    this.manifest = manifest;
    this.session = session;
    this.name = manifest.name;
    this.version = manifest.version;
    this.features = manifest.features;
    this.output = manifest.output;
    this.classes = manifest.output.classes ?? null;
    this.classNames = (this.classes ?? []).map(String);
    // the class of a label as the graph gives it (a string, a number, a BigInt; booleans as 0/1)
    this.classOf = new Map();
    for (const c of this.classes ?? []) {
      for (const text of typeof c === "boolean" ? [String(c), String(Number(c))] : [String(c)]) {
        if (!this.classOf.has(text)) this.classOf.set(text, c);
      }
    }
    this.schema = new InputSchema(this.features, edge.number_limit ?? Infinity);
    this.inputs = edge.inputs;
    this.matrix = this.inputs.length === 1 && this.features.length > 1;
    this.single = edge.input_dtype === "float32";
    this.missing = edge.missing_category;
    this.unseen = edge.unseen_category;
    const probabilities = this.output.task === "classification" && this.output.probabilities;
    this.outputs = probabilities ? edge.outputs.slice(0, 2) : edge.outputs.slice(0, 1);
    const missing = [...this.inputs].sort().join() !== [...session.inputNames].sort().join();
    if ((!this.matrix && this.inputs.length !== this.features.length) || missing) {
      throw new BundleError("the edge graph's inputs do not match the manifest's features");
    }
  }

  numbers(values) {
    const array = this.single ? new Float32Array(values.length) : new Float64Array(values.length);
    values.forEach((v, i) => {
      array[i] = v === null ? NaN : typeof v === "boolean" ? Number(v) : v;
    });
    return array;
  }

  feeds(columns, n) {
    const { Tensor } = this.ort;
    const dtype = this.single ? "float32" : "float64";
    if (this.matrix) {
      const k = this.features.length;
      const values = new Array(n * k);
      this.features.forEach((f, j) => columns[f.name].forEach((v, i) => (values[i * k + j] = v)));
      return { [this.inputs[0]]: new Tensor(dtype, this.numbers(values), [n, k]) };
    }
    const feeds = {};
    this.features.forEach((f, j) => {
      const column = columns[f.name];
      if (f.kind === "categorical") {
        const known = this.schema.checkers[j].allowed;
        const texts = column.map((v) => (v === null ? this.missing : known.has(v) ? v : this.unseen));
        feeds[this.inputs[j]] = new Tensor("string", texts, [n, 1]);
      } else {
        feeds[this.inputs[j]] = new Tensor(dtype, this.numbers(column), [n, 1]);
      }
    });
    return feeds;
  }

  label(raw) {
    if (this.classes === null) return typeof raw === "bigint" ? Number(raw) : raw;
    const found = this.classOf.get(String(raw));
    return found === undefined ? raw : found;
  }

  /** Score validated columns of n rows: one answer per row ({label, probabilities} or {value}),
   * null for a row the model gave no finite answer for. */
  async run(columns, n) {
    if (n === 0) return [];
    const results = await this.session.run(this.feeds(columns, n), this.outputs);
    const first = results[this.outputs[0]].data;
    if (this.output.task === "regression") {
      return Array.from(first, (v) => (Number.isFinite(Number(v)) ? { value: Number(v) } : null));
    }
    const proba = this.outputs.length > 1 ? results[this.outputs[1]].data : null;
    const k = this.classNames.length;
    const answers = [];
    for (let i = 0; i < n; i++) {
      const label = this.label(first[i]);
      if (proba === null) {
        answers.push({ label });
        continue;
      }
      const row = Array.from(proba.subarray(i * k, (i + 1) * k), Number);
      if (!row.every(Number.isFinite)) {
        answers.push(null);
        continue;
      }
      answers.push({ label, probabilities: Object.fromEntries(this.classNames.map((c, j) => [c, row[j]])) });
    }
    return answers;
  }

  /**
   * Score what is valid, list the rest (the batch function's rule). Returns {rows, predictions,
   * errors, notes}: predictions[i] is the answer of instance rows[i]; errors and notes as
   * {path, reason} (notes with their kind).
   */
  async score(instances, { unknown = "reject" } = {}) {
    const checked = this.schema.validate(instances, { unknown });
    const answers = await this.run(checked.columns, checked.rows.length);
    const rows = [];
    const predictions = [];
    const dropped = new Set();
    answers.forEach((answer, i) => {
      if (answer === null) dropped.add(checked.rows[i]);
      else {
        rows.push(checked.rows[i]);
        predictions.push(answer);
      }
    });
    const errors = [...checked.errors];
    for (const row of dropped) errors.push({ row, field: null, reason: NO_FINITE_PREDICTION });
    errors.sort((a, b) => a.row - b.row);
    return {
      rows,
      predictions,
      errors: errors.map(remark),
      notes: checked.notes.filter((n) => !dropped.has(n.row)).map((n) => ({ ...remark(n), kind: n.kind })),
    };
  }

  /** Score one row made from the schema and forget it: onnxruntime prepares its kernels on a
   * session's first run, so the first real answer is as fast as the next ones. */
  async warmUp() {
    const row = Object.fromEntries(
      this.features.map((f) => {
        if (f.categories?.length) return [f.name, f.categories[0]];
        if (f.kind === "boolean") return [f.name, true];
        if (f.kind === "categorical") return [f.name, f.nullable ? null : ""];
        const middle = f.min != null && f.max != null ? (f.min + f.max) / 2 : 0;
        return [f.name, f.kind === "integer" ? Math.round(middle) : middle];
      }),
    );
    const checked = this.schema.validate([row], { unknown: "ignore" });
    await this.run(checked.columns, checked.rows.length);
  }

  /** All or nothing, as POST /predict: the answer the API gives, or InvalidInput. */
  async predict(instances) {
    if (!Array.isArray(instances)) {
      throw new InvalidInput(INVALID_REQUEST, [{ path: "instances", reason: "expected an array" }]);
    }
    if (instances.length === 0) {
      throw new InvalidInput(INVALID_REQUEST, [{ path: "instances", reason: "must hold at least one instance" }]);
    }
    const checked = this.schema.validate(instances);
    if (checked.errors.length) throw new InvalidInput(INVALID_INSTANCES, checked.errors.map(remark));
    const answers = await this.run(checked.columns, instances.length);
    const unscored = answers.flatMap((a, i) => (a === null ? [{ row: i, field: null, reason: NO_FINITE_PREDICTION }] : []));
    if (unscored.length) throw new InvalidInput(INVALID_INSTANCES, unscored.map(remark));
    return {
      model: { name: this.name, version: this.version },
      predictions: answers,
      notes: checked.notes.map(remark),
    };
  }
}

/**
 * A model from a bundle's manifest (manifest.json, parsed) and its graph's bytes, scored by
 * `ort` (the onnxruntime-web or onnxruntime-node module). The graph's SHA-256 and size must be
 * the manifest's: a tampered graph is refused before it is parsed.
 */
export async function createModel(ort, manifest, graph, sessionOptions = {}) {
  const edge = manifest?.edge;
  if (!isObject(edge) || manifest.format !== 1 || !Array.isArray(manifest.features)) {
    throw new BundleError("manifest.json is not an sklambda edge manifest (format 1)");
  }
  const bytes = graph instanceof Uint8Array ? graph : new Uint8Array(graph);
  const digest = await sha256(bytes);
  if (bytes.length !== edge.bytes || digest !== edge.sha256) {
    throw new BundleError(
      `${edge.graph} does not match manifest.json: SHA-256 ${digest.slice(0, 12)}… where ` +
        `${String(edge.sha256).slice(0, 12)}… is expected; refusing to load it`,
    );
  }
  // each runtime's own CPU provider (onnxruntime-node's cpu, onnxruntime-web's wasm)
  const session = await ort.InferenceSession.create(bytes, sessionOptions);
  return new Model(ort, manifest, session);
}
