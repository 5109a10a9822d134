// The edge page: a form generated from the model's schema, scored on the device.
import * as ort from "./ort/ort.wasm.min.mjs";

import { InvalidInput, createModel } from "./sklambda-edge.js";

ort.env.wasm.wasmPaths = new URL("./ort/", import.meta.url).href;
ort.env.wasm.numThreads = 1; // no cross-origin isolation needed; one row is small

const $ = (id) => document.getElementById(id);
const timings = (window.sklambdaTimings = []);

function text(tag, content, attributes = {}) {
  const element = document.createElement(tag);
  element.textContent = content;
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  return element;
}

function field(feature) {
  const id = `f-${feature.name}`;
  const label = text("label", feature.name, { for: id });
  let input;
  let hint = null;
  if (feature.kind === "categorical" || feature.kind === "boolean") {
    input = document.createElement("select");
    const options = feature.kind === "boolean" ? ["true", "false"] : feature.categories ?? [];
    if (feature.nullable) input.append(text("option", "(missing)", { value: "" }));
    for (const option of options) input.append(text("option", option, { value: option }));
  } else {
    input = document.createElement("input");
    input.type = "number";
    input.step = feature.kind === "integer" ? "1" : "any";
    if (feature.min != null && feature.max != null) {
      input.placeholder = `${feature.min} to ${feature.max}`;
      hint = `trained on ${feature.min} to ${feature.max}`;
    }
    if (!feature.nullable) input.required = true;
  }
  if (feature.nullable) hint = hint ? `${hint}; may stay empty` : "may stay empty";
  input.id = id;
  input.name = feature.name;
  const parts = [label, input];
  if (hint) {
    parts.push(text("small", hint, { id: `${id}-hint` }));
    input.setAttribute("aria-describedby", `${id}-hint`);
  }
  return parts;
}

function value(feature, raw) {
  if (raw === "") return null;
  if (feature.kind === "boolean") return raw === "true";
  if (feature.kind === "numeric" || feature.kind === "integer") return Number(raw);
  return raw;
}

function instance(model) {
  const data = new FormData($("instance"));
  return Object.fromEntries(model.features.map((f) => [f.name, value(f, String(data.get(f.name) ?? ""))]));
}

function showAnswer(answer) {
  const prediction = answer.predictions[0];
  $("refused").hidden = true;
  const label = "label" in prediction ? prediction.label : prediction.value;
  $("label").textContent = String(label);
  const bars = $("bars");
  bars.replaceChildren();
  for (const [name, p] of Object.entries(prediction.probabilities ?? {})) {
    const row = text("div", "", { class: name === String(prediction.label) ? "bar top" : "bar", "data-class": name });
    const track = text("div", "", { class: "track" });
    const fill = text("div", "", { class: "fill", style: `width: ${(p * 100).toFixed(1)}%` });
    track.append(fill);
    row.append(text("span", name), track, text("span", p.toFixed(4), { class: "p" }));
    bars.append(row);
  }
  $("notes").replaceChildren(...answer.notes.map((n) => text("li", `${n.path}: ${n.reason}`)));
  $("answer").hidden = false;
}

function showRefusal(error) {
  $("answer").hidden = true;
  $("refused-message").textContent = error.message;
  $("reasons").replaceChildren(...error.errors.map((e) => text("li", `${e.path}: ${e.reason}`)));
  $("refused").hidden = false;
}

async function start() {
  const manifest = await (await fetch("manifest.json")).json();
  const graph = await (await fetch(manifest.edge.graph)).arrayBuffer();
  const model = await createModel(ort, manifest, graph);
  await model.warmUp();
  $("model-name").textContent = model.name;
  $("model-version").textContent = `version ${model.version} · ${manifest.output.task}`;
  $("model-description").textContent = manifest.description ?? "";
  $("fields").replaceChildren(...model.features.flatMap(field));
  $("fault-list").replaceChildren(
    ...manifest.known_faults.map((f) =>
      text("li", `${f.condition}: ${f.metric} ${f.value} against ${f.overall} overall (${f.rows} holdout rows)`),
    ),
  );
  if (!manifest.known_faults.length) $("fault-list").append(text("li", "none found on the holdout"));
  $("runtime").textContent = `onnxruntime-web ${ort.env.versions?.web ?? ""}`;
  $("instance").addEventListener("submit", async (event) => {
    event.preventDefault();
    const started = performance.now();
    try {
      const answer = await model.predict([instance(model)]);
      window.sklambdaLastAnswer = answer;
      showAnswer(answer);
    } catch (error) {
      // a refusal names the fields; anything else (the runtime failing) is shown, not swallowed
      const refusal = error instanceof InvalidInput ? error : { message: "the model could not answer", errors: [{ path: "model", reason: String(error?.message ?? error) }] };
      window.sklambdaLastAnswer = { message: refusal.message, errors: refusal.errors };
      showRefusal(refusal);
    }
    const elapsed = performance.now() - started;
    timings.push(elapsed);
    $("timing").textContent = `answered on this device in ${elapsed.toFixed(1)} ms`;
    document.body.dataset.answered = String(timings.length);
  });
  $("predict").disabled = false;
  document.body.dataset.state = "ready";
}

start().catch((error) => {
  $("model-name").textContent = "The model could not be loaded";
  $("model-description").textContent = String(error?.message ?? error);
  document.body.dataset.state = "failed";
});
