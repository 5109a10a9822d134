#!/usr/bin/env node
// Score with a bundle in Node: sklambda-edge.mjs BUNDLE_DIR [--predict] < {"instances": [...]}
//
// Prints the answer as JSON: without --predict, the valid instances scored and the others'
// reasons ({rows, predictions, errors, notes}, the batch rule); with --predict, what POST
// /predict answers ({model, predictions, notes}, or {message, errors} and exit status 1).

import { readFileSync } from "node:fs";

import { InvalidInput, loadModel } from "../src/node.js";

const [dir, ...flags] = process.argv.slice(2);
if (!dir || flags.some((f) => f !== "--predict")) {
  console.error("usage: sklambda-edge.mjs BUNDLE_DIR [--predict] < request.json");
  process.exit(2);
}
const model = await loadModel(dir);
// JSON as the API reads it: NaN, Infinity and -Infinity are numbers too (Python's json).
const SPECIAL = "\u0000sklambda-number:";
function parse(text) {
  const marked = text.replace(/"(?:[^"\\]|\\.)*"|-?Infinity|NaN/g, (m) => (m[0] === '"' ? m : JSON.stringify(SPECIAL + m)));
  return JSON.parse(marked, (_, v) => (typeof v === "string" && v.startsWith(SPECIAL) ? Number(v.slice(SPECIAL.length)) : v));
}

let request;
try {
  request = parse(readFileSync(0, "utf8"));
} catch {
  console.log(JSON.stringify({ message: "the request body is not valid JSON" }));
  process.exit(1);
}
const instances = request?.instances;
if (flags.includes("--predict")) {
  try {
    console.log(JSON.stringify(await model.predict(instances)));
  } catch (error) {
    if (!(error instanceof InvalidInput)) throw error;
    console.log(JSON.stringify({ message: error.message, errors: error.errors }));
    process.exit(1);
  }
} else {
  if (!Array.isArray(instances)) {
    console.log(JSON.stringify({ message: "the request does not match the API", errors: [{ path: "instances", reason: "expected an array" }] }));
    process.exit(1);
  }
  console.log(JSON.stringify(await model.score(instances)));
}
