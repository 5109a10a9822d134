// The module in Node on a bundle written by `make edge` (SKLAMBDA_EDGE_BUNDLE, by default the
// example model's): answers shaped as the API's, all or nothing, and a tampered graph refused.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { BundleError, InvalidInput, loadModel } from "../src/node.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const BUNDLE = process.env.SKLAMBDA_EDGE_BUNDLE ?? join(HERE, "..", "..", "dist", "edge", "penguins");
const manifest = JSON.parse(readFileSync(join(BUNDLE, "manifest.json"), "utf8"));
const CLASSES = manifest.output.classes.map(String);

// A valid instance from the schema: each feature's first category, the middle of its range.
function instance() {
  return Object.fromEntries(
    manifest.features.map((f) => {
      if (f.categories?.length) return [f.name, f.categories[0]];
      if (f.kind === "boolean") return [f.name, false];
      const middle = f.min != null && f.max != null ? (f.min + f.max) / 2 : 1;
      return [f.name, f.kind === "integer" ? Math.round(middle) : middle];
    }),
  );
}
const numeric = manifest.features.find((f) => f.kind === "numeric" || f.kind === "integer");

let model;
before(async () => {
  model = await loadModel(BUNDLE);
});

describe("predict", () => {
  test("answers as POST /predict does: the model, one prediction per instance, notes", async () => {
    const answer = await model.predict([instance(), instance()]);
    assert.deepEqual(answer.model, { name: manifest.name, version: manifest.version });
    assert.equal(answer.predictions.length, 2);
    assert.deepEqual(answer.notes, []);
    for (const prediction of answer.predictions) {
      if (manifest.output.task === "regression") {
        assert.deepEqual(Object.keys(prediction), ["value"]);
        continue;
      }
      assert.ok(manifest.output.classes.includes(prediction.label));
      if (!manifest.output.probabilities) continue;
      assert.deepEqual(Object.keys(prediction.probabilities), CLASSES);
      const total = Object.values(prediction.probabilities).reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(total - 1) < 1e-6, `probabilities sum to ${total}`);
      const best = CLASSES.reduce((a, b) => (prediction.probabilities[b] > prediction.probabilities[a] ? b : a));
      assert.equal(String(prediction.label), best);
    }
  });

  test("is all or nothing: one bad instance refuses the request, naming every reason", async () => {
    const bad = { ...instance(), [numeric.name]: "12", wings: 2 };
    await assert.rejects(model.predict([instance(), bad]), (error) => {
      assert.ok(error instanceof InvalidInput);
      assert.equal(error.message, "some instances do not match the model's input schema");
      assert.deepEqual(error.errors, [
        { path: "instances[1].wings", reason: "unknown feature" },
        { path: `instances[1].${numeric.name}`, reason: "expected a number, got a string" },
      ]);
      return true;
    });
  });

  test("refuses what is no list of instances, as the API does", async () => {
    for (const [request, reason] of [
      [{}, "expected an array"],
      ["x", "expected an array"],
      [[], "must hold at least one instance"],
    ]) {
      await assert.rejects(model.predict(request), (error) => {
        assert.ok(error instanceof InvalidInput);
        assert.equal(error.message, "the request does not match the API");
        assert.deepEqual(error.errors, [{ path: "instances", reason }]);
        return true;
      });
    }
  });

  test("notes a number outside the training range and scores it", async () => {
    const far = { ...instance(), [numeric.name]: numeric.max + 1000 };
    const answer = await model.predict([far]);
    assert.equal(answer.predictions.length, 1);
    assert.deepEqual(answer.notes.map((n) => n.path), [`instances[0].${numeric.name}`]);
    assert.match(answer.notes[0].reason, /^outside the training range \[/);
  });
});

describe("score", () => {
  test("scores the valid instances and lists the others", async () => {
    const result = await model.score([instance(), null, instance()]);
    assert.deepEqual(result.rows, [0, 2]);
    assert.equal(result.predictions.length, 2);
    assert.deepEqual(result.errors, [{ path: "instances[1]", reason: "expected an object, got null" }]);
    assert.deepEqual(result.predictions[0], result.predictions[1]);
  });
});

describe("the bundle", () => {
  let copy;
  before(() => {
    copy = mkdtempSync(join(tmpdir(), "sklambda-edge-"));
    cpSync(BUNDLE, copy, { recursive: true, filter: (source) => !source.includes(`${BUNDLE}/ort`) });
  });
  after(() => rmSync(copy, { recursive: true, force: true }));

  test("a graph that is not the one the manifest names is refused before it is parsed", async () => {
    const path = join(copy, manifest.edge.graph);
    const bytes = readFileSync(path);
    bytes[bytes.length - 1] ^= 0xff;
    writeFileSync(path, bytes);
    await assert.rejects(loadModel(copy), (error) => {
      assert.ok(error instanceof BundleError);
      assert.match(error.message, /does not match manifest\.json: SHA-256 .* refusing to load it/);
      return true;
    });
  });

  test("a manifest that is not an edge manifest is refused", async () => {
    writeFileSync(join(copy, "manifest.json"), JSON.stringify({ name: "x" }));
    await assert.rejects(loadModel(copy), BundleError);
  });

  test("the command line scores a request read from standard input", () => {
    const cli = join(HERE, "..", "bin", "sklambda-edge.mjs");
    const body = JSON.stringify({ instances: [instance()] });
    const answer = JSON.parse(execFileSync(process.execPath, [cli, BUNDLE, "--predict"], { input: body }));
    assert.equal(answer.predictions.length, 1);
    const text = `{"instances": [${JSON.stringify({ ...instance(), [numeric.name]: 1 }).replace(/:1([,}])/, ":NaN$1")}]}`;
    const scored = JSON.parse(execFileSync(process.execPath, [cli, BUNDLE], { input: text }));
    const feature = manifest.features.find((f) => f.name === numeric.name);
    assert.equal(scored.rows.length, feature.nullable ? 1 : 0, "NaN reads as a number, as the API reads it");
  });
});
