// The transcript: items drawn from operations the kernel sends, never the whole transcript.
// ops: add {id, html} · append {id, text} · set {id, html} · prepend {html: [...]} ·
// reset {html: [...], ids: [...]}. Keeps at most `window` items and a bounded text per item.

const TEXT_LIMIT = 40000;

function render({ model, el: root }) {
  const box = el("div", "hx-stream");
  const more = el("button", "hx-earlier", "▲ earlier");
  const list = el("div", "hx-items");
  box.append(list);
  root.append(more, box);
  const byId = new Map();

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  const parse = (html) => {
    const t = document.createElement("template");
    t.innerHTML = html;
    return t.content.firstElementChild || el("div", "hx-info", "");
  };
  const body = (node) => (node.matches(".hx-text") ? node : node.querySelector("div") || node);
  const place = (id, html, before) => {
    const node = parse(html);
    if (id !== undefined) { node.dataset.id = id; byId.set(id, node); }
    list.insertBefore(node, before);
  };
  const trim = () => {
    while (list.children.length > model.get("window")) {
      const old = list.firstElementChild;
      byId.delete(old.dataset.id && Number(old.dataset.id));
      old.remove();
    }
  };
  const clip = (node) => {
    const b = body(node);
    if (b.textContent.length > TEXT_LIMIT) b.textContent = "…" + b.textContent.slice(-TEXT_LIMIT / 2);
  };
  const empty = () => {
    if (!list.children.length) list.append(el("div", "hx-info hx-empty", model.get("empty_text")));
  };

  const apply = (op) => {
    list.querySelector(".hx-empty")?.remove();
    if (op.op === "reset") {
      list.replaceChildren();
      byId.clear();
      op.html.forEach((html, i) => place(op.ids[i], html, null));
    } else if (op.op === "add") {
      place(op.id, op.html, null);
    } else if (op.op === "append" && byId.has(op.id)) {
      const node = byId.get(op.id);
      body(node).append(op.text);
      clip(node);
    } else if (op.op === "set" && byId.has(op.id)) {
      const node = parse(op.html);
      node.dataset.id = op.id;
      byId.get(op.id).replaceWith(node);
      byId.set(op.id, node);
    } else if (op.op === "prepend") {
      const first = list.firstElementChild;
      for (const html of op.html) place(undefined, html, first);
    }
  };
  const onMessage = (msg) => {
    if (msg.type !== "ops") return;
    msg.ops.forEach(apply);
    // A page the user asked for stays; live items push the oldest out.
    if (!msg.ops.some((op) => op.op === "prepend")) trim();
    empty();
  };
  const showMore = () => { more.style.display = model.get("has_earlier") ? "" : "none"; };
  more.addEventListener("click", () => model.send({ type: "earlier" }));
  model.on("msg:custom", onMessage);
  model.on("change:has_earlier", showMore);
  showMore();
  empty();
  model.send({ type: "sync" });
  return () => {
    model.off("msg:custom", onMessage);
    model.off("change:has_earlier", showMore);
  };
}

export default { render };
