// The interest explorer (bamrec serve, GET /): asks POST /interests and POST /recommend for one user or
// history and draws the answers. No framework and no build step; every value from the server is put in
// the page as text (textContent), never as markup, so a title cannot inject anything.
"use strict";

(function () {
  const form = document.getElementById("query");
  const status = document.getElementById("status");
  const errorLine = document.getElementById("error");
  const results = document.getElementById("results");
  const heading = document.getElementById("results-heading");
  const summary = document.getElementById("summary");
  const body = document.getElementById("result-body");
  const DRAWS_ON = 8; // history items listed per interest, by weight
  const TOP = 10; // each interest's own best items listed in its panel
  const COLOURS = 8; // --i0 .. --i7 in explorer.css

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else if (name === "colour") node.style.setProperty("--c", `var(--i${value % COLOURS})`);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function fixed(value, digits) {
    return Number(value).toFixed(digits);
  }

  // An item's title, or its id where the dataset has no metadata for it.
  function titleOf(entry) {
    return typeof entry.title === "string" && entry.title !== "" ? entry.title : `item ${entry.item}`;
  }

  // The item's other metadata columns (genres, category, ...), short, for a second line.
  function metaOf(entry) {
    const skip = new Set(["item", "title", "rank", "score", "interest"]);
    const parts = [];
    for (const [name, value] of Object.entries(entry)) {
      if (skip.has(name) || value === null || value === "" || typeof value === "object") continue;
      parts.push(String(value).split("|").join(", ")); // MovieLens genres come as Drama|Romance
    }
    const text = parts.join(" · ");
    return text.length > 90 ? text.slice(0, 89) + "…" : text;
  }

  function itemCell(entry) {
    const meta = metaOf(entry);
    return el("td", {class: "title"}, el("span", {text: titleOf(entry)}),
              meta ? el("span", {class: "meta", text: meta}) : null);
  }

  function chip(k) {
    return el("span", {class: "chip", colour: k, text: k, title: `interest ${k}`});
  }

  function headerRow(names) {
    return el("thead", {}, el("tr", {}, names.map(
      ([name, cls]) => el("th", {scope: "col", class: cls || null, text: name}))));
  }

  function historyTable(answer) {
    const weights = answer.weights;
    const table = el("table", {id: "history-table"},
      el("caption", {text: `Oldest first: the ${answer.history.length} items the model read` +
        (answer.history_length > answer.history.length ? ` (the last of ${answer.history_length})` : "")}),
      headerRow([["#", "num"], ["Title"], ["Item", "num"]].concat(weights ? [["Strongest interest"]] : [])));
    const rows = el("tbody");
    answer.history.forEach((entry, i) => {
      let strongest = null;
      if (weights) {
        let best = 0;
        for (let k = 1; k < weights.length; k++) if (weights[k][i] > weights[best][i]) best = k;
        strongest = el("td", {}, chip(best), ` ${fixed(weights[best][i], 3)}`);
      }
      rows.append(el("tr", {"data-item": entry.item}, el("td", {class: "num", text: i + 1}), itemCell(entry),
                     el("td", {class: "num id", text: entry.item}), strongest));
    });
    table.append(rows);
    return el("div", {class: "scroll", tabindex: 0, role: "region", "aria-label": "History, scrollable"}, table);
  }

  function recommendationTable(items) {
    const table = el("table", {id: "recommendations-table"},
      el("caption", {text: "Best first: score = max over the interests of m_k · e_i; the interest that scored it"}),
      headerRow([["Rank", "num"], ["Title"], ["Item", "num"], ["Score", "num"], ["Interest"]]));
    const rows = el("tbody");
    for (const entry of items) {
      rows.append(el("tr", {"data-item": entry.item, "data-score": entry.score, "data-interest": entry.interest},
                     el("td", {class: "num", text: entry.rank}), itemCell(entry),
                     el("td", {class: "num id", text: entry.item}), el("td", {class: "num", text: fixed(entry.score, 3)}),
                     el("td", {}, chip(entry.interest))));
    }
    table.append(rows);
    return el("div", {class: "scroll", tabindex: 0, role: "region", "aria-label": "Recommendations, scrollable"}, table);
  }

  // Mean cosine of each interest to the others, and over all pairs (null with one interest).
  function cosines(cosine) {
    const K = cosine.length;
    const perInterest = cosine.map((row, k) => K > 1 ? row.reduce((s, v, j) => s + (j === k ? 0 : v), 0) / (K - 1) : null);
    const mean = K > 1 ? perInterest.reduce((s, v) => s + v, 0) / K : null;
    return {perInterest, mean};
  }

  function interestPanel(answer, k, retrieved, total, meanCosine) {
    const id = `interest-${k}`;
    const panel = el("section", {class: "panel interest", id, colour: k, "aria-labelledby": `${id}-heading`,
                                 "data-interest": k},
      el("h4", {id: `${id}-heading`}, chip(k), ` Interest ${k}`),
      el("p", {class: "stats", text: `retrieves ${retrieved} of the ${total} recommendations` +
        (meanCosine === null ? "" : ` · mean cosine to the others ${fixed(meanCosine, 2)}`)}));
    if (answer.weights) {
      const weights = answer.weights[k];
      const order = weights.map((w, i) => i).sort((a, b) => weights[b] - weights[a] || b - a).slice(0, DRAWS_ON);
      const largest = weights[order[0]] || 1;
      const kind = answer.weights_kind === "routing" ? "routing weight" : answer.weights_kind === "mean" ? "mean weight" : "attention";
      const table = el("table", {class: "draws-on"},
        el("caption", {text: `Draws on: its ${order.length} heaviest history items (${kind})`}),
        headerRow([["Title"], ["#", "num"], ["Weight", "num"]]));
      const rows = el("tbody");
      for (const i of order) {
        const bar = el("span", {class: "bar", colour: k, "aria-hidden": "true"});
        bar.style.width = `${Math.max(1, Math.round(48 * weights[i] / largest))}px`;
        rows.append(el("tr", {"data-item": answer.history[i].item}, itemCell(answer.history[i]),
                       el("td", {class: "num id", text: i + 1}), el("td", {class: "num"}, bar, fixed(weights[i], 3))));
      }
      table.append(rows);
      panel.append(table);
    } else {
      panel.append(el("p", {class: "stats", text: "This model has no per-interest weights on the history."}));
    }
    const top = answer.top[k].slice(0, TOP);
    panel.append(el("h5", {text: `Its own top ${top.length}`}),
                 el("ol", {class: "top"}, top.map((entry) => el("li", {"data-item": entry.item},
                   el("span", {text: titleOf(entry)}), " ", el("span", {class: "id", text: `(${entry.item})`})))));
    return panel;
  }

  function balance(answer, counts, total, cos) {
    const K = answer.cosine.length;
    const perInterest = el("table", {id: "balance-table"},
      el("caption", {text: "Which interest retrieved the recommendations"}),
      headerRow([["Interest"], ["Recommendations", "num"], ["Share", "num"], ["Mean cosine to the others", "num"]]));
    const rows = el("tbody");
    for (let k = 0; k < K; k++) {
      rows.append(el("tr", {}, el("th", {scope: "row"}, chip(k), ` Interest ${k}`), el("td", {class: "num", text: counts[k]}),
                     el("td", {class: "num", text: total ? `${Math.round(100 * counts[k] / total)}%` : "–"}),
                     el("td", {class: "num", text: cos.perInterest[k] === null ? "–" : fixed(cos.perInterest[k], 2)})));
    }
    perInterest.append(rows);
    const matrix = el("table", {id: "cosine-table"}, el("caption", {text: "Cosine between the interest vectors"}),
      el("thead", {}, el("tr", {}, el("td"), answer.cosine.map((_, j) => el("th", {scope: "col", class: "num"}, `Interest ${j}`)))));
    const mrows = el("tbody");
    answer.cosine.forEach((row, k) => mrows.append(el("tr", {}, el("th", {scope: "row"}, `Interest ${k}`),
      row.map((value) => el("td", {class: "num", text: fixed(value, 2)})))));
    matrix.append(mrows);
    return el("div", {class: "two"}, perInterest, matrix);
  }

  function section(id, title, ...children) {
    return el("section", {id, "aria-labelledby": `${id}-heading`}, el("h3", {id: `${id}-heading`, text: title}), children);
  }

  function draw(query, answer, recommended) {
    const K = answer.interests.length;
    const items = recommended.items;
    const counts = new Array(K).fill(0);
    for (const entry of items) counts[entry.interest] += 1;
    const cos = cosines(answer.cosine);
    const who = query.user !== undefined ? `User ${query.user}` : `A history of ${query.items.length} items`;
    summary.replaceChildren(
      `${who}: ${answer.history_length} items in the history, ${K} interests, ${items.length} recommendations` +
      (cos.mean === null ? "." : `; mean cosine between the interests ${fixed(cos.mean, 2)}.`));
    if (query.user !== undefined) {
      summary.append(" ", el("a", {href: linkTo(query), id: "permalink", text: "Link to this user"}));
    }
    // Panels in rows of at most three, evenly filled: 4 interests are 2 x 2, not 3 + 1.
    const panels = el("div", {class: "grid"});
    panels.style.setProperty("--cols", K <= 3 ? K : K === 4 ? 2 : 3);
    for (let k = 0; k < K; k++) panels.append(interestPanel(answer, k, counts[k], items.length, cos.perInterest[k]));
    body.replaceChildren(
      el("div", {class: "two"},
         section("history", `History (${answer.history.length} items)`, historyTable(answer)),
         section("recommendations", `Recommendations (${items.length})`, recommendationTable(items))),
      section("interests", `The ${K} interests`, panels),
      section("balance", "Balance", balance(answer, counts, items.length, cos)));
    return `${who}: ${K} interests and ${items.length} recommendations shown.`;
  }

  // The query the form describes; an Error with a message for the user when it describes none.
  function readForm() {
    const by = form.elements.by.value;
    const k = Number(form.elements.k.value);
    if (!Number.isInteger(k) || k < 1) throw new Error("Recommendations: give a whole number of at least 1.");
    const query = {k, exclude_history: document.getElementById("exclude").checked};
    if (by === "items") {
      const items = form.elements.items.value.split(/[\s,;]+/).filter((token) => token !== "");
      if (!items.length) throw new Error("Item ids: paste at least one item id.");
      query.items = items;
    } else {
      const user = form.elements.user.value.trim();
      if (!user) throw new Error("User id: type a user id.");
      query.user = user;
    }
    return query;
  }

  // The address that opens this query again: /?user=ID, plus k and the exclusion where not the defaults.
  function linkTo(query) {
    const params = new URLSearchParams();
    if (query.user !== undefined) params.set("user", query.user);
    else params.set("items", query.items.join(","));
    if (query.k !== 20) params.set("k", query.k);
    if (!query.exclude_history) params.set("exclude_history", "0");
    return `?${params.toString()}`;
  }

  async function post(path, payload) {
    const response = await fetch(path, {method: "POST", headers: {"content-type": "application/json"},
                                        body: JSON.stringify(payload)});
    let answer;
    try {
      answer = await response.json();
    } catch (_) {
      throw new Error(`${path} answered ${response.status} without JSON`);
    }
    if (!response.ok) throw new Error(answer.error || `${path} answered ${response.status}`);
    return answer;
  }

  function showError(message) {
    errorLine.textContent = message;
    errorLine.hidden = false;
  }

  async function run(moveFocus) {
    errorLine.hidden = true;
    errorLine.textContent = "";
    let query;
    try {
      query = readForm();
    } catch (error) {
      showError(error.message);
      return;
    }
    results.setAttribute("aria-busy", "true");
    status.textContent = "Loading…";
    try {
      const [answer, recommended] = await Promise.all([post("interests", query), post("recommend", query)]);
      status.textContent = draw(query, answer, recommended);
      history.replaceState(null, "", linkTo(query));
      if (moveFocus) heading.focus();
    } catch (error) {
      body.replaceChildren();
      summary.textContent = "No results.";
      status.textContent = "";
      showError(error.message);
    } finally {
      results.setAttribute("aria-busy", "false");
    }
  }

  function showFields() {
    const byItems = form.elements.by.value === "items";
    document.getElementById("user-field").hidden = byItems;
    document.getElementById("items-field").hidden = !byItems;
  }

  for (const radio of form.elements.by) radio.addEventListener("change", showFields);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run(true);
  });
  showFields();
  if (form.dataset.autorun === "1") run(false);
})();
