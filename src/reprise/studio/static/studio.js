// reprise studio: fills the form from /api/models and /api/datasets, starts a job, polls it, shows the results.
"use strict";

const $ = (id) => document.getElementById(id);
const form = $("form");
let models = [], datasets = [], current = null, timer = null;

function say(text, ok = false) {
  $("message").textContent = text;
  $("message").className = ok ? "ok" : "";
}

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({ detail: `${response.status} ${response.statusText}` }));
  if (!response.ok) throw new Error(typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail));
  return body;
}

const checked = (name) => form.querySelector(`input[name=${name}]:checked`).value;

// what each task starts from (the first is the default) and what the page says about it; as jobs.SOURCES
const TASKS = {
  continue: { sources: ["nothing", "midi", "dataset"], legend: "Start from" },
  harmonize: {
    sources: ["midi", "dataset"],
    legend: "Melody to harmonise",
    note: "keeps your melody as the soprano, note for note, and writes alto, tenor and bass on the 16th-note grid. " +
      "The melody must be one voice on the grid (or tick quantize) in the soprano range (transpose moves it).",
  },
  accompany: {
    sources: ["midi"],
    legend: "Song with a melody track",
    note: "writes an accompaniment under the melody track of your song; the result has both tracks. " +
      "Length is the most events it writes.",
  },
  infill: {
    sources: ["midi", "dataset"],
    legend: "Piece to fill in",
    note: "writes the chosen bars anew and keeps every other note; the new bars join the old at both ends.",
  },
};

function showModel() {
  const m = models.find((x) => x.key === $("model").value);
  if (!m) return;
  const nll = m.valid_nll == null ? "" : ` · valid NLL ${m.valid_nll.toFixed(4)}`;
  $("model-info").textContent = `${m.summary} · ${m.task} · ${m.tokenizer}${nll}`;
  // a decoder-only model continues music; an encoder-decoder does the one task it was trained for
  form.querySelectorAll("input[name=task]").forEach((r) => {
    r.disabled = r.value !== m.task;
    r.checked = r.value === m.task;
  });
  // bars where the model's tokenizer has a fixed bar length, else tokens; a change of unit resets the lengths
  const bars = m.tokens_per_bar != null, unit = bars ? "bars" : "tokens";
  $("unit").querySelector("option[value=bars]").disabled = !bars;
  if ($("unit").value !== unit) {
    $("unit").value = unit;
    $("length").value = bars ? 8 : 256;
    $("primer").value = bars ? 2 : 64;
  }
  updateUnit();
  updateTask();
}

function updateUnit() {
  document.querySelectorAll(".unit-name").forEach((e) => (e.textContent = $("unit").value));
}

function updateTask() {
  const task = checked("task"), spec = TASKS[task];
  form.querySelectorAll("input[name=source]").forEach((r) => (r.parentElement.hidden = !spec.sources.includes(r.value)));
  if (!spec.sources.includes(checked("source"))) form.querySelector(`input[name=source][value=${spec.sources[0]}]`).checked = true;
  const source = checked("source"), m = models.find((x) => x.key === $("model").value);
  $("source-legend").textContent = spec.legend;
  $("task-note").textContent = spec.note && m ? `${m.name} ${spec.note}` : "";
  $("dataset-choice").hidden = source !== "dataset";
  $("upload-row").hidden = source !== "midi";
  $("primer-row").hidden = task !== "continue" || source === "nothing";
  $("melody-track-row").hidden = !["harmonize", "accompany"].includes(task) || source !== "midi";
  $("melody_track").placeholder = task === "accompany" ? "MELODY" : "the only one";
  if (task === "accompany" && !$("melody_track").value) $("melody_track").value = "MELODY";
  $("harmonize-options").hidden = task !== "harmonize";
  $("quantize-row").hidden = source !== "midi";
  $("bars-row").hidden = task !== "infill";
  $("length-row").hidden = task === "harmonize" || task === "infill";  // the given music sets the length
  $("length-name").textContent = task === "accompany" ? "at most" : "length";
}

function fillPieces() {
  const d = datasets.find((x) => x.key === $("dataset").value);
  $("piece").replaceChildren(...(d ? d.pieces : []).map((name, i) => new Option(name, i)));
}

async function start(event) {
  event.preventDefault();
  say("");
  const data = new FormData(form);
  if (checked("source") !== "midi") data.delete("midi");
  $("results").replaceChildren();
  try {
    const { id } = await api("/api/jobs", { method: "POST", body: data });
    current = id;
    running(true);
    poll();
  } catch (err) {
    say(err.message);
  }
}

function running(on) {
  $("generate").disabled = on;
  $("cancel").disabled = !on;
}

async function poll() {
  clearTimeout(timer);
  let job;
  try {
    job = await api(`/api/jobs/${current}`);
  } catch (err) {
    running(false);
    return say(err.message);
  }
  $("progress").value = job.progress;
  $("stage").textContent = job.stage;
  if (job.status === "queued" || job.status === "running") {
    timer = setTimeout(poll, 250);
    return;
  }
  running(false);
  if (job.status === "done") {
    say(`${job.samples} sample${job.samples > 1 ? "s" : ""} ready.`, true);
    for (let n = 1; n <= job.samples; n++) showResult(job.id, n, job.attention);
  } else if (job.status === "cancelled") {
    say("Cancelled.", true);
  } else {
    say(job.error || "The job failed.");
  }
}

function showResult(id, n, attention) {
  const node = $("result-template").content.firstElementChild.cloneNode(true);
  const base = `/api/jobs/${id}/samples/${n}`;
  node.id = `result-${n}`;
  node.querySelector("h2").textContent = `Sample ${n}`;
  node.querySelector(".roll").src = `${base}/png`;
  node.querySelector(".player").src = `${base}/wav`;
  node.querySelector(".dl-mid").href = `${base}/mid?download=1`;
  node.querySelector(".dl-wav").href = `${base}/wav?download=1`;
  node.querySelector(".dl-xml").href = `${base}/musicxml?download=1`;
  const frame = node.querySelector(".attention");
  if (attention) {  // why this model's samples have no attention arcs
    node.querySelector(".show-attention-row").hidden = true;
    node.querySelector(".no-attention").textContent = `${attention}.`;
    node.querySelector(".no-attention").hidden = false;
  }
  node.querySelector(".show-attention").addEventListener("click", async (e) => {
    e.target.disabled = true;
    e.target.textContent = "Computing attention…";
    try {
      const response = await fetch(`${base}/attention`);
      if (!response.ok) throw new Error((await response.json()).detail);
      frame.srcdoc = await response.text();
      frame.hidden = false;
      e.target.textContent = "Attention shown below";
    } catch (err) {
      say(err.message);
      e.target.textContent = "Show attention";
      e.target.disabled = false;
    }
  });
  $("results").appendChild(node);
}

async function init() {
  [models, datasets] = await Promise.all([api("/api/models"), api("/api/datasets")]);
  $("model").replaceChildren(...models.map((m) => new Option(`${m.name} (${m.kind === "shipped" ? "shipped" : "your run"})`, m.key)));
  $("no-models").hidden = models.length > 0;
  $("generate").disabled = models.length === 0;
  $("dataset").replaceChildren(...datasets.map((d) => new Option(d.key, d.key)));
  form.querySelector("input[name=source][value=dataset]").disabled = datasets.length === 0;
  fillPieces();
  showModel();
  updateTask();
}

$("model").addEventListener("change", showModel);
$("unit").addEventListener("change", updateUnit);
$("dataset").addEventListener("change", fillPieces);
form.querySelectorAll("input[name=task], input[name=source]").forEach((e) => e.addEventListener("change", updateTask));
form.addEventListener("submit", start);
$("cancel").addEventListener("click", () => current && api(`/api/jobs/${current}/cancel`, { method: "POST" }).catch((e) => say(e.message)));
init().catch((err) => say(`Cannot reach the studio server: ${err.message}`));
