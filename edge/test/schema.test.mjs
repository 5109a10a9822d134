// The module's validation: the API's rules and reason texts (src/sklambda/schema.py), on a
// schema of every feature kind. Cross-runtime parity with Python is tests/integration/test_edge.py.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { InputSchema, cut, pyFloat, pyRepr, rangeNote } from "../src/sklambda-edge.js";

const FEATURES = [
  { name: "x", kind: "numeric", nullable: false, min: 0.5, max: 10 },
  { name: "n", kind: "integer", nullable: true, min: 1, max: 6300 },
  { name: "colour", kind: "categorical", nullable: false, categories: ["red", "blue", "Ärger"], unseen: "reject" },
  { name: "shape", kind: "categorical", nullable: true, categories: ["round"], unseen: "score", unseen_handling: "an all-zero encoding" },
  { name: "ok", kind: "boolean", nullable: false },
];
const GOOD = { x: 1.5, n: 3, colour: "red", shape: "round", ok: true };
const schema = new InputSchema(FEATURES, 2 ** 128 - 2 ** 103);

function reasons(instances, options) {
  return schema.validate(instances, options).errors.map((e) => [e.row, e.field, e.reason]);
}

describe("validation", () => {
  test("a valid row is kept with its clean values", () => {
    const checked = schema.validate([GOOD]);
    assert.deepEqual(checked.rows, [0]);
    assert.deepEqual(checked.errors, []);
    assert.deepEqual(checked.columns.x, [1.5]);
    assert.deepEqual(checked.columns.ok, [true]);
  });

  test("unknown features come first, in key order, then each feature in schema order", () => {
    const row = { zeta: 1, x: "1", alpha: 2, colour: 3, ok: 1 };
    assert.deepEqual(reasons([row]), [
      [0, "zeta", "unknown feature"],
      [0, "alpha", "unknown feature"],
      [0, "x", "expected a number, got a string"],
      [0, "n", "missing feature"],
      [0, "colour", "expected a string, got a number"],
      [0, "shape", "missing feature"],
      [0, "ok", "expected a boolean, got a number"],
    ]);
    assert.deepEqual(reasons([row], { unknown: "ignore" }).slice(0, 1), [[0, "x", "expected a number, got a string"]]);
  });

  test("a property set to undefined is absent, as JSON would leave it out", () => {
    assert.deepEqual(reasons([{ ...GOOD, x: undefined, extra: undefined }]), [[0, "x", "missing feature"]]);
  });

  test("numbers: NaN, infinity, out of range, booleans, nulls", () => {
    const rows = [NaN, Infinity, -Infinity, 2 ** 128, true, null, [1], { a: 1 }].map((x) => ({ ...GOOD, x }));
    assert.deepEqual(reasons(rows), [
      [0, "x", "NaN is not allowed"],
      [1, "x", "infinity is not allowed"],
      [2, "x", "infinity is not allowed"],
      [3, "x", "number out of range"],
      [4, "x", "expected a number, got a boolean"],
      [5, "x", "must not be null"],
      [6, "x", "expected a number, got an array"],
      [7, "x", "expected a number, got an object"],
    ]);
  });

  test("integers: whole doubles pass, fractions and non-finite numbers do not, NaN is missing when nullable", () => {
    const rows = [2.0, 2.5, Infinity, NaN, null, 2 ** 63, -(2 ** 63), "3"].map((n) => ({ ...GOOD, n }));
    const checked = schema.validate(rows);
    assert.deepEqual(checked.rows, [0, 3, 4, 6]);
    assert.deepEqual(checked.columns.n, [2, null, null, -(2 ** 63)]);
    const fractional = "expected an integer, got a fractional or non-finite number";
    assert.deepEqual(reasons(rows), [
      [1, "n", fractional],
      [2, "n", fractional],
      [5, "n", "number out of range"],
      [7, "n", "expected an integer, got a string"],
    ]);
  });

  test("categories: unseen refused with the sorted list, or scored with a note", () => {
    const checked = schema.validate([
      { ...GOOD, colour: "green" },
      { ...GOOD, shape: "square" },
    ]);
    assert.deepEqual(
      checked.errors.map((e) => e.reason),
      ["unknown category 'green'; expected one of ['blue', 'red', 'Ärger']"],
    );
    assert.deepEqual(checked.notes, [
      { row: 1, field: "shape", reason: "category 'square' not seen in training; scored with an all-zero encoding", kind: "unseen_category" },
    ]);
  });

  test("a lone surrogate is refused and never echoed", () => {
    assert.deepEqual(reasons([{ ...GOOD, shape: "a\ud800b" }]), [[0, "shape", "not valid Unicode text (a lone surrogate)"]]);
  });

  test("a row that is not an object", () => {
    assert.deepEqual(reasons([null, [], "x", 3]), [
      [0, null, "expected an object, got null"],
      [1, null, "expected an object, got an array"],
      [2, null, "expected an object, got a string"],
      [3, null, "expected an object, got a number"],
    ]);
  });

  test("numbers outside the training range are scored with a note, the bounds included", () => {
    const checked = schema.validate([0.5, 10, 0.4999, 10.5].map((x) => ({ ...GOOD, x })));
    assert.deepEqual(checked.rows, [0, 1, 2, 3]);
    assert.deepEqual(checked.notes.map((n) => n.row), [2, 3]);
    assert.equal(checked.notes[0].reason, "outside the training range [0.5, 10]; scored, but the model has not seen such values");
  });
});

describe("texts as Python writes them", () => {
  test("repr of strings", () => {
    assert.equal(pyRepr("plain"), "'plain'");
    assert.equal(pyRepr("it's"), `"it's"`);
    assert.equal(pyRepr(`it's "x"`), `'it\\'s "x"'`);
    assert.equal(pyRepr("tab\tnew\nline\r\\"), "'tab\\tnew\\nline\\r\\\\'");
    assert.equal(pyRepr("\x00\x1f\x7f\x85\xa0\xad é"), "'\\x00\\x1f\\x7f\\x85\\xa0\\xad é'");
    assert.equal(pyRepr("\u2028\u200b😀"), "'\\u2028\\u200b😀'");
    assert.equal(pyRepr("\u{e0001}"), "'\\U000e0001'");
  });

  test("values are cut at 40 code points, an astral character counting once", () => {
    const long = "😀".repeat(45);
    assert.equal(cut(long), "😀".repeat(39) + "…");
    assert.equal(cut("x".repeat(40)), "x".repeat(40));
    assert.equal(cut("a\udc00"), "a\ufffd");
  });

  test("repr of doubles", () => {
    const cases = [
      [32.1, "32.1"], [5, "5.0"], [0.0001, "0.0001"], [0.00001, "1e-05"], [1e16, "1e+16"],
      [1234567890123456.7, "1234567890123456.8"], [210.20000000000005, "210.20000000000005"],
      [-0.0, "-0.0"], [1.5e-300, "1.5e-300"], [123e20, "1.23e+22"], [-2.5e-7, "-2.5e-07"],
    ];
    for (const [x, text] of cases) assert.equal(pyFloat(x), text, String(x));
  });

  test("range notes name the bounds as the API does", () => {
    const note = (min, max) => rangeNote({ kind: "numeric", min, max });
    assert.equal(note(2700, 6300), "outside the training range [2700, 6300]; scored, but the model has not seen such values");
    assert.equal(note(null, 1e15), "above the training maximum 1000000000000000.0; scored, but the model has not seen such values");
    assert.equal(note(-0.00001, null), "below the training minimum -1e-05; scored, but the model has not seen such values");
    assert.equal(note(null, null), null);
    assert.equal(rangeNote({ kind: "categorical", min: 1, max: 2 }), null);
  });
});
