// The edge module in Node: a bundle directory (make edge) scored with onnxruntime-node.
//
//   import { loadModel } from "sklambda-edge/src/node.js";
//   const model = await loadModel("dist/edge/penguins");
//   console.log(await model.predict([bird]));

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import * as ort from "onnxruntime-node";

import { BundleError, createModel } from "./sklambda-edge.js";

export * from "./sklambda-edge.js";

/** The model of the bundle in `dir` (its manifest.json and its graph). */
export async function loadModel(dir, sessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1 }) {
  let manifest;
  try {
    manifest = JSON.parse(await readFile(join(dir, "manifest.json"), "utf8"));
  } catch (error) {
    throw new BundleError(`cannot read ${join(dir, "manifest.json")}: ${error.message}`);
  }
  const name = manifest?.edge?.graph;
  if (typeof name !== "string" || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/.test(name)) {
    throw new BundleError("manifest.json names no graph file in its directory");
  }
  return createModel(ort, manifest, await readFile(join(dir, name)), sessionOptions);
}
