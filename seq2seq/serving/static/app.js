// The web page of `seq2seq serve`: three tabs over the JSON API. No build step.
"use strict";

const $ = (selector) => document.querySelector(selector);

function showError(text) {
  const box = $("#message");
  box.textContent = text;
  box.hidden = !text;
}

async function apiError(response) {
  try {
    const body = await response.json();
    return body.error || `${response.status} ${response.statusText}`;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

async function call(url, options) {
  showError("");
  const response = await fetch(url, options);
  if (!response.ok) throw new Error(await apiError(response));
  return response;
}

function busy(form, on) {
  form.querySelector("button[type=submit]").disabled = on;
}

// ---- tabs and models ------------------------------------------------------------------------

for (const tab of document.querySelectorAll("nav button")) {
  tab.addEventListener("click", () => {
    for (const other of document.querySelectorAll("nav button")) {
      other.setAttribute("aria-selected", String(other === tab));
      $("#" + other.dataset.panel).hidden = other !== tab;
    }
    showError("");
  });
}

async function loadModels() {
  const { models } = await (await call("/v1/models")).json();
  for (const select of document.querySelectorAll("select[data-task]")) {
    const mine = models.filter((model) => model.task === select.dataset.task);
    select.innerHTML = "";
    for (const model of mine) select.add(new Option(model.name, model.name));
    if (!mine.length) select.add(new Option("(none served)", ""));
  }
}

// ---- translate --------------------------------------------------------------------------------

function heatmap(canvas, weights, rowLabels, columnLabels) {
  const cell = 28, left = 110, top = 90;
  canvas.width = left + cell * columnLabels.length + 10;
  canvas.height = top + cell * rowLabels.length + 10;
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.font = "13px system-ui";
  rowLabels.forEach((label, row) => {
    context.fillStyle = "#223";
    context.textAlign = "right";
    context.fillText(label, left - 6, top + row * cell + cell * 0.65);
    columnLabels.forEach((_, column) => {
      const weight = weights[row][column] ?? 0;
      context.fillStyle = `rgba(47, 111, 159, ${weight})`;
      context.fillRect(left + column * cell, top + row * cell, cell - 1, cell - 1);
    });
  });
  columnLabels.forEach((label, column) => {
    context.save();
    context.translate(left + column * cell + cell * 0.65, top - 6);
    context.rotate(-Math.PI / 3);
    context.fillStyle = "#223";
    context.textAlign = "left";
    context.fillText(label, 0, 0);
    context.restore();
  });
}

$("#translate-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const lines = form.text.value.split("\n").filter((line) => line.trim());
  const body = {
    text: lines.length ? lines : [""],
    beam: Number(form.beam.value),
    n_best: Number(form.n_best.value),
    attention: true,
  };
  if (form.model.value) body.model = form.model.value;
  const list = $("#translations");
  busy(form, true);
  try {
    const response = await call("/v1/translate", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const { translations } = await response.json();
    list.innerHTML = "";
    translations.forEach((translation) => {
      const item = document.createElement("li");
      const [best, ...others] = translation.hypotheses;
      item.textContent = best.text;
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = best.score === null ? "" : best.score.toFixed(2);
      item.append(score);
      for (const other of others) {
        const line = document.createElement("div");
        line.className = "other";
        line.textContent = `${other.text}  (${other.score === null ? "-" : other.score.toFixed(2)})`;
        item.append(line);
      }
      item.addEventListener("click", () => {
        for (const chosen of list.querySelectorAll(".chosen")) chosen.classList.remove("chosen");
        item.classList.add("chosen");
        if (!best.attention) return;
        $("#alignment").hidden = false;
        heatmap($("#alignment-canvas"), best.attention, [...best.tokens, "</s>"].slice(0, best.attention.length), translation.source_tokens);
      });
      list.append(item);
    });
    if (list.firstChild) list.firstChild.click();
  } catch (error) {
    showError(error.message);
  } finally {
    busy(form, false);
  }
});

// ---- caption ----------------------------------------------------------------------------------

let pickedImage = null;

function drawAttention(image, weights, grid) {
  const canvas = $("#caption-canvas");
  const size = 320;
  canvas.width = canvas.height = size;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0, size, size);
  if (!weights) return;
  const most = Math.max(...weights);
  const cell = size / grid;
  weights.forEach((weight, index) => {
    context.fillStyle = `rgba(0, 0, 0, ${0.75 * (1 - weight / most)})`;
    context.fillRect((index % grid) * cell, Math.floor(index / grid) * cell, cell, cell);
  });
}

function pick(file) {
  pickedImage = file;
  const image = new Image();
  image.onload = () => drawAttention(image, null, 1);
  image.src = URL.createObjectURL(file);
  $("#caption-text").textContent = "";
  $("#words").innerHTML = "";
}

const drop = $("#drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  if (event.dataTransfer.files.length) pick(event.dataTransfer.files[0]);
});
$("#caption-form").images.addEventListener("change", (event) => {
  if (event.target.files.length) pick(event.target.files[0]);
});

$("#caption-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  if (!pickedImage) {
    showError("Pick or drop an image first.");
    return;
  }
  const data = new FormData();
  data.append("images", pickedImage, pickedImage.name);
  data.append("beam", form.beam.value);
  data.append("attention", "true");
  if (form.model.value) data.append("model", form.model.value);
  busy(form, true);
  try {
    const result = await (await call("/v1/caption", { method: "POST", body: data })).json();
    const caption = result.captions[0].hypotheses[0];
    $("#caption-text").textContent = caption.text || "(the model gave an empty caption)";
    const image = new Image();
    image.onload = () => {
      const words = $("#words");
      words.innerHTML = "";
      const labels = [...caption.tokens, "</s>"].slice(0, (caption.attention || []).length);
      labels.forEach((word, index) => {
        const chip = document.createElement("span");
        chip.textContent = word;
        chip.addEventListener("click", () => {
          for (const chosen of words.querySelectorAll(".chosen")) chosen.classList.remove("chosen");
          chip.classList.add("chosen");
          drawAttention(image, caption.attention[index], result.grid_size);
        });
        words.append(chip);
      });
      if (words.firstChild) words.firstChild.click();
      else drawAttention(image, null, 1);
    };
    image.src = URL.createObjectURL(pickedImage);
  } catch (error) {
    showError(error.message);
  } finally {
    busy(form, false);
  }
});

// ---- generate ---------------------------------------------------------------------------------

$("#generate-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const body = {
    prime: form.prime.value,
    length: Number(form.elements.namedItem("length").value),
    temperature: Number(form.temperature.value),
    top_k: Number(form.top_k.value),
    top_p: Number(form.top_p.value),
    stream: true,
  };
  if (form.model.value) body.model = form.model.value;
  const output = $("#generated");
  output.textContent = form.prime.value;
  busy(form, true);
  try {
    const response = await call("/v1/generate", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      const events = buffered.split("\n\n");
      buffered = events.pop();
      for (const event of events) {
        const kind = (event.match(/^event: (.*)$/m) || [null, "message"])[1];
        const data = JSON.parse((event.match(/^data: (.*)$/m) || [null, "{}"])[1]);
        if (kind === "error") throw new Error(data.error);
        if (kind === "message") output.textContent += data.text;
      }
    }
  } catch (error) {
    showError(error.message);
  } finally {
    busy(form, false);
  }
});

loadModels().catch((error) => showError(`Could not list the models: ${error.message}`));
