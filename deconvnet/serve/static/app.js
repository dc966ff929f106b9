"use strict";
// The live explorer's page: plain JavaScript, no build step, nothing from the network.
// State: the model's description, the current image id, the layer's grid and the selected unit.
(function () {
  const $ = (id) => document.getElementById(id);
  const client = Math.random().toString(36).slice(2, 12);  // lets the server drop this page's stale requests
  const state = {model: null, image: null, grid: null, order: [], channel: null, position: null, webcam: null,
                 gridsShown: 0, unitsShown: 0};
  window.deconvServe = state;  // for tests and the console

  function status(text, isError) {
    $("status").textContent = text || "";
    $("status").classList.toggle("error", !!isError);
  }

  function element(tag, properties, children) {
    const node = document.createElement(tag);
    Object.assign(node, properties || {});
    (children || []).forEach((child) => node.append(child));
    return node;
  }

  // A JSON answer; null for a request superseded by a newer one (409) or refused as busy (429).
  async function api(url, options) {
    const response = await fetch(url, options);
    if (response.status === 409 || response.status === 429) return null;
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    return body;
  }

  // A download link's JSON as a blob URL; the slot's previous one is released (the webcam makes many).
  const blobs = {};
  function jsonUrl(slot, value) {
    if (blobs[slot]) URL.revokeObjectURL(blobs[slot]);
    blobs[slot] = URL.createObjectURL(new Blob([JSON.stringify(value, null, 2)], {type: "application/json"}));
    return blobs[slot];
  }

  function query(values) {
    return Object.entries(values).filter(([, v]) => v !== null && v !== undefined)
      .map(([k, v]) => encodeURIComponent(k) + "=" + encodeURIComponent(v)).join("&");
  }

  function modes() {
    return Array.from(document.querySelectorAll("#modes input:checked")).map((box) => box.value).join(",");
  }

  // -- start ------------------------------------------------------------------------------
  async function start() {
    const model = state.model = await api("/api/model");
    $("model").textContent = model.model + " (" + model.weights + ")";
    model.layers.forEach(function (layer) {
      const label = (layer.alias ? layer.alias + " · " : "") + layer.name + " · " + layer.type + " " + layer.shape +
        " · field " + layer.field;
      $("layer").append(element("option", {value: layer.name, textContent: label}));
    });
    const params = new URLSearchParams(window.location.search);
    const wanted = params.get("layer") || model.default_layer;
    const row = model.layers.find((layer) => layer.name === wanted || layer.alias === wanted);
    $("layer").value = row ? row.name : model.layers[model.layers.length - 1].name;
    state.channel = params.has("channel") ? parseInt(params.get("channel"), 10) : null;
    state.pinned = state.channel !== null;
    model.modes.forEach(function (mode) {
      const box = element("input", {type: "checkbox", value: mode, checked: model.default_modes.includes(mode)});
      box.addEventListener("change", () => state.channel !== null && showUnit());
      $("modes").append(element("label", {}, [box, " " + mode]));
    });
    model.photos.forEach(function (name) {
      const thumb = element("img", {src: "/photos/" + name.split("/").map(encodeURIComponent).join("/"),
                                    alt: name, title: name, loading: "lazy"});
      thumb.dataset.name = name;
      thumb.addEventListener("click", () => pickPhoto(name));
      $("photos").append(thumb);
    });
    if (model.photos.length) await pickPhoto(model.photos[0]);
  }

  // -- inputs -----------------------------------------------------------------------------
  async function pickPhoto(name) {
    document.querySelectorAll("#photos img").forEach((img) => img.classList.toggle("chosen", img.dataset.name === name));
    $("input-preview").src = "/photos/" + name.split("/").map(encodeURIComponent).join("/");
    await useImage(api("/api/images?" + query({photo: name}), {method: "POST"}));
  }

  async function upload(blob, name) {
    document.querySelectorAll("#photos img").forEach((img) => img.classList.remove("chosen"));
    return api("/api/images?" + query({name: name || "upload"}), {method: "POST", body: blob,
      headers: {"Content-Type": blob.type || "application/octet-stream"}});
  }

  async function useImage(pending, keepUnit) {
    try {
      status("computing…");
      const picture = await pending;
      if (!picture) return;
      state.image = picture.id;
      await showGrid(keepUnit);
      status("");
    } catch (error) {
      status(error.message, true);
    }
  }

  function uploadFile(file) {
    if (!file) return;
    $("input-preview").src = URL.createObjectURL(file);
    stopWebcam();
    useImage(upload(file, file.name));
  }

  $("file").addEventListener("change", (event) => uploadFile(event.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", function (event) {
    event.preventDefault();
    drop.classList.remove("over");
    uploadFile(event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", function (event) {
    const item = Array.from(event.clipboardData.items).find((one) => one.type.startsWith("image/"));
    if (item) uploadFile(item.getAsFile());
  });

  // The webcam: one frame at a time, the next one taken when the grid of the last is shown, so
  // frames go at the rate the server keeps up with and none pile up.
  async function startWebcam() {
    const video = $("video");
    try {
      state.webcam = await navigator.mediaDevices.getUserMedia({video: {width: 320, height: 240}});
    } catch (error) {
      status("no webcam: " + error.message, true);
      return;
    }
    video.srcObject = state.webcam;
    video.classList.add("on");
    $("input-preview").removeAttribute("src");
    $("webcam").textContent = "stop webcam";
    await video.play();
    const canvas = element("canvas", {width: 320, height: 240});
    while (state.webcam) {
      canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
      const blob = await new Promise((done) => canvas.toBlob(done, "image/jpeg", 0.85));
      await useImage(upload(blob, "webcam.jpg"), true);
      await new Promise((done) => setTimeout(done, 30));
    }
  }

  function stopWebcam() {
    if (!state.webcam) return;
    state.webcam.getTracks().forEach((track) => track.stop());
    state.webcam = null;
    $("video").classList.remove("on");
    $("webcam").textContent = "webcam";
  }

  $("webcam").addEventListener("click", () => (state.webcam ? stopWebcam() : startWebcam()));

  // -- the grid ---------------------------------------------------------------------------
  async function showGrid(keepUnit) {
    const grid = await api("/api/grid?" + query({image: state.image, layer: $("layer").value, client: client}));
    if (!grid) return;
    await new Promise(function (done, fail) {  // the sprite first, so the tiles never show half-loaded
      const probe = new Image();
      probe.onload = done;
      probe.onerror = () => fail(new Error("the grid picture did not load"));
      probe.src = grid.sprite;
    });
    state.grid = grid;
    const [tileH, tileW] = grid.tile;
    const tiles = grid.channels.map(function (row) {
      const picture = element("i");
      const column = row.channel % grid.columns, line = Math.floor(row.channel / grid.columns);
      Object.assign(picture.style, {width: tileW + "px", height: tileH + "px", backgroundImage: "url(" + grid.sprite + ")",
                                    backgroundPosition: -column * tileW + "px " + -line * tileH + "px"});
      const tile = element("button", {type: "button", className: "tile",
        title: "channel " + row.channel + ": peak " + row.peak.toPrecision(4) + ", mean " + row.mean.toPrecision(3)},
        [picture, element("b", {textContent: row.channel}), element("small", {textContent: row.peak.toPrecision(3)})]);
      Object.assign(tile.dataset, {channel: row.channel, peak: row.peak, mean: row.mean});
      tile.style.width = tileW + 4 + "px";
      tile.addEventListener("click", () => select(row.channel, null));
      return tile;
    });
    $("grid").replaceChildren(...tiles);
    $("grid-title").replaceChildren("every channel of " + (grid.alias || grid.layer) + ": " + grid.channels.length +
      " maps, " + grid.map.join("x") + " each (white: each channel's own peak, printed under it) ",
      element("a", {className: "download", href: jsonUrl("grid", grid), textContent: "numbers (JSON)",
                    download: (grid.alias || grid.layer) + "_channels.json"}));
    sortTiles();
    state.gridsShown += 1;
    $("grid").dataset.shown = state.gridsShown;
    // A new image selects its strongest channel; the webcam keeps the chosen one (and only redraws the grid),
    // as does a page opened on a unit (?channel=).
    const kept = state.channel !== null && state.channel < grid.channels.length && (keepUnit || state.pinned);
    state.pinned = false;
    await select(kept ? state.channel : grid.strongest, null, keepUnit);
  }

  function sortTiles() {
    const key = $("sort").value;
    const tiles = Array.from($("grid").children);
    const number = (tile, name) => parseFloat(tile.dataset[name]);
    tiles.sort((a, b) => key === "channel" ? number(a, "channel") - number(b, "channel")
      : number(b, key) - number(a, key) || number(a, "channel") - number(b, "channel"));
    $("grid").append(...tiles);
    state.order = tiles.map((tile) => number(tile, "channel"));
  }

  $("sort").addEventListener("change", sortTiles);
  $("layer").addEventListener("change", function () {
    state.channel = null;
    state.position = null;
    if (state.image) useImage(Promise.resolve({id: state.image}));
  });

  // -- one unit ---------------------------------------------------------------------------
  async function select(channel, position, gridOnly) {
    state.channel = channel;
    state.position = position;
    document.querySelectorAll("#grid .tile").forEach(function (tile) {
      const chosen = parseInt(tile.dataset.channel, 10) === channel;
      tile.classList.toggle("selected", chosen);
      if (chosen) tile.scrollIntoView({block: "nearest"});
    });
    showZoom();
    if (!gridOnly) await showUnit();
  }

  function channelRow() {
    return state.grid.channels.find((row) => row.channel === state.channel);
  }

  function showZoom() {
    const grid = state.grid, row = channelRow(), zoom = $("zoom");
    const [mapH, mapW] = grid.map, [tileH, tileW] = grid.tile;
    const side = 224, scaleX = side / tileW, scaleY = side / tileH;
    const column = state.channel % grid.columns, line = Math.floor(state.channel / grid.columns);
    Object.assign(zoom.style, {backgroundImage: "url(" + grid.sprite + ")",
      backgroundSize: grid.columns * side + "px " + Math.ceil(grid.channels.length / grid.columns) * side + "px",
      backgroundPosition: -column * side + "px " + -line * side + "px"});
    zoom.replaceChildren();
    const y = state.position ? state.position[0] : row.y, x = state.position ? state.position[1] : row.x;
    if (y !== null) {
      const mark = element("span", {className: "mark"});
      Object.assign(mark.style, {left: x * side / mapW + "px", top: y * side / mapH + "px",
                                 width: Math.max(side / mapW, 4) + "px", height: Math.max(side / mapH, 4) + "px"});
      zoom.append(mark);
    }
    zoom.dataset.scale = scaleX + "," + scaleY;
  }

  $("zoom").addEventListener("click", function (event) {
    if (!state.grid) return;
    const [mapH, mapW] = state.grid.map, box = event.currentTarget.getBoundingClientRect();
    const y = Math.min(mapH - 1, Math.floor((event.clientY - box.top) / box.height * mapH));
    const x = Math.min(mapW - 1, Math.floor((event.clientX - box.left) / box.width * mapW));
    if (mapH > 1 || mapW > 1) select(state.channel, [y, x]);
  });

  function unitQuery(which) {
    const row = channelRow();
    const position = state.position || (row.y === null ? null : [row.y, row.x]);
    return query({image: state.image, layer: state.grid.layer, channel: state.channel, modes: modes(),
                  y: position && position[0], x: position && position[1], which: which, client: client});
  }

  function figure(url, caption, className) {
    return element("figure", {className: className || ""},
      [element("img", {src: url, alt: caption}), element("figcaption", {textContent: caption})]);
  }

  function unitPanel(unit) {
    const panels = [figure(unit.input, "input"), figure(unit.patch, "image patch"),
      ...unit.projections.map((one) => figure(one.url, one.title, "projection " + one.mode))];
    const downloads = element("p", {}, [
      element("a", {className: "download", href: "/api/figure.png?" + unitQuery(), textContent: "figure (PNG)",
                    download: ""}),
      element("a", {className: "download", href: jsonUrl(unit.which, unit), textContent: "numbers (JSON)",
                    download: unit.layer + "_c" + unit.channel + ".json"})]);
    return [element("h3", {textContent: unit.title}),
            element("p", {className: "meta", textContent: unit.subtitle + (unit.which === "compare"
              ? " · weights " + unit.weights : "")}),
            element("div", {className: "panels"}, panels), element("p", {className: "note", textContent: unit.note}),
            downloads];
  }

  async function showUnit() {
    if (!state.grid || state.channel === null) return;
    try {
      const unit = await api("/api/unit?" + unitQuery("main"));
      if (!unit) return;
      if (unit.channel !== state.channel) return;  // the user moved on meanwhile
      state.unit = unit;
      $("unit").replaceChildren(...unitPanel(unit));
      $("context").replaceChildren(...contextPanel(unit));
      if (state.model.compare) {
        const other = await api("/api/unit?" + unitQuery("compare"));
        if (other) $("compare").replaceChildren(...unitPanel(other));
      }
      state.unitsShown += 1;
      $("unit").dataset.shown = state.unitsShown;
      if (state.model.featurevis) showFeaturevis(unit.layer, unit.channel);
    } catch (error) {
      status(error.message, true);
    }
  }

  // -- its feature visualization: made once on the server (progress polled), then read from its cache ----
  async function showFeaturevis(layer, channel) {
    const panel = $("featurevis"), wanted = layer + "/" + channel;
    panel.dataset.unit = wanted;
    const bar = element("progress", {id: "featurevis-progress", max: 1, value: 0});
    const note = element("span", {className: "meta", textContent: " optimizing the input for channel " + channel + "…"});
    panel.replaceChildren(element("h3", {textContent: "feature visualization"}), bar, note);
    try {
      for (;;) {
        if (panel.dataset.unit !== wanted) return;  // another unit was picked meanwhile
        const response = await fetch("/api/featurevis?" + query({layer: layer, channel: channel}));
        const body = await response.json();
        if (panel.dataset.unit !== wanted) return;
        if (response.status === 429) {
          note.textContent = " " + body.error;
        } else if (!response.ok) {
          throw new Error(body.error || response.statusText);
        } else if (body.state === "done") {
          panel.replaceChildren(element("h3", {textContent: "feature visualization"}),
            figure(body.url, body.caption, "featurevis"));
          panel.querySelector("img").id = "featurevis-image";
          return;
        } else {
          bar.value = body.progress;
          note.textContent = " optimizing the input for channel " + channel + ": " +
            Math.round(100 * body.progress) + "%";
        }
        await new Promise((done) => setTimeout(done, 500));
      }
    } catch (error) {
      if (panel.dataset.unit === wanted) panel.replaceChildren(element("p", {className: "meta",
        textContent: "feature visualization: " + error.message}));
    }
  }

  // -- its dataset context ----------------------------------------------------------------
  function contextPanel(unit) {
    const context = unit.context;
    if (!context) {
      return [element("p", {className: "meta", textContent: "No dataset context: build a microscope site for this " +
        "model (deconv microscope IMAGES -o SITE --model " + state.model.model + ") and start deconv serve with " +
        "--site SITE to see this unit's top-9 and where this image falls among them."})];
    }
    if (!context.available) return [element("p", {className: "meta", textContent: context.note})];
    const parts = [element("h3", {textContent: "top " + context.entries.length + " of " + context.images +
      " images in the site"})];
    const entries = context.entries.map(function (entry, i) {
      const cells = Object.entries(context.strips).map(([mode, url]) => cell(url, i, context.cell, mode))
        .concat([cell(context.patches, i, context.cell, "image patch")]);
      return element("figure", {className: "entry"}, [element("div", {}, cells),
        element("figcaption", {textContent: (i + 1) + ". " + entry.image + (entry.label ? " (" + entry.label + ")" : "") +
          " " + entry.value.toPrecision(4)})]);
    });
    parts.push(element("div", {className: "entries"}, entries));
    if (context.histogram) {
      parts.push(histogram(context.histogram, context.peak));
      parts.push(element("p", {id: "share", className: "meta", textContent: "this image: peak " +
        context.peak.toPrecision(4) + ", stronger than " + Math.round(100 * context.share_below) + "% of the " +
        context.images + " images (per-image maxima, read from the histogram)"}));
    }
    parts.push(element("p", {}, [element("a", {href: context.page, textContent: "the unit's page in the site",
                                               id: "site-link"})]));
    return parts;
  }

  function cell(url, index, side, title) {
    const img = element("img", {className: "cell", src: url, alt: title + " " + (index + 1), title: title});
    img.style.objectPosition = -index * side + "px 0";
    return img;
  }

  function histogram(hist, value) {
    const ns = "http://www.w3.org/2000/svg", w = 480, h = 120, pad = 28;
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.setAttribute("class", "histogram");
    svg.setAttribute("width", w);
    svg.setAttribute("height", h);
    const add = function (tag, attributes, text) {
      const node = document.createElementNS(ns, tag);
      Object.entries(attributes).forEach(([k, v]) => node.setAttribute(k, v));
      if (text !== undefined) node.textContent = text;
      svg.append(node);
      return node;
    };
    const tallest = Math.max(...hist.counts), bar = (w - 2 * pad) / hist.counts.length;
    const end = hist.start + hist.width * hist.counts.length;
    hist.counts.forEach(function (count, j) {
      const height = (h - 2 * pad) * count / tallest;
      add("rect", {x: pad + j * bar, y: h - pad - height, width: Math.max(bar - 1, 1), height: height});
    });
    add("line", {x1: pad, x2: w - pad, y1: h - pad, y2: h - pad, class: "axis"});
    add("text", {x: pad, y: h - pad + 16}, hist.start.toPrecision(4));
    add("text", {x: w - pad, y: h - pad + 16, "text-anchor": "end"}, end.toPrecision(4));
    const x = pad + Math.min(Math.max((value - hist.start) / (end - hist.start), 0), 1) * (w - 2 * pad);
    add("line", {x1: x, x2: x, y1: pad - 6, y2: h - pad, class: "here", id: "here"});
    add("text", {x: x, y: pad - 9, "text-anchor": "middle"}, "this image");
    return svg;
  }

  // -- keys -------------------------------------------------------------------------------
  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || !state.grid) return;
    if (event.target.closest && event.target.closest("input, select, textarea")) return;
    const step = {ArrowLeft: -1, ArrowRight: 1}[event.key];
    if (!step) return;
    event.preventDefault();
    const at = state.order.indexOf(state.channel);
    const next = state.order[Math.min(Math.max(at + step, 0), state.order.length - 1)];
    if (next !== state.channel) select(next, null);
  });

  start().catch((error) => status(error.message, true));
})();
